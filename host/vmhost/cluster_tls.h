// TLS material of the cluster's processes (vmhost init writes it):
//   controller: <dataDir>/pki/{ca,controller}.{crt,key}, join-token,
//               api-token; it signs node certificates (one per node name,
//               recorded in pki/issued/<node>.crt).
//   node:       cluster.caFile, and <dataDir>/pki/node.{key,crt}, obtained
//               once from the API with the join token (a CSR whose CN is the
//               node's name), as kubelet's TLS bootstrap does.
#pragma once

#include "common/config.h"
#include "common/pki.h"
#include "common/result.h"

#include <optional>
#include <string>

namespace vmhost::cli {

struct ControllerTls {
  std::string pkiDir;
  pki::KeyPair ca;
  std::string certPem, keyPem;
  std::string joinToken, apiToken;
};

// nullopt when the data directory has no PKI (not initialised: plain TCP).
Result<std::optional<ControllerTls>> loadControllerTls(const std::string& dataDir);

// Signs `node`'s CSR: its CN must be the node's name, and a name gets one
// certificate (ALREADY_EXISTS afterwards).
Result<std::string> issueNodeCertificate(const ControllerTls& tls, const std::string& node,
                                         const std::string& csrPem);

struct NodeTls {
  std::string caPem, certPem, keyPem;
};

// The node's certificate: read from <dataDir>/pki, or requested from
// cluster.apiServer with the join token and saved there.
Result<NodeTls> bootstrapNode(const HostConfig& config);

// Writes the node's certificate, key and the cluster CA as libvirt's TLS
// migration reads them (qemu.conf migrate_tls_x509_cert_dir = `dir`):
// ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
// client-key.pem (the node is the server of its inbound migrations and the
// client of its outbound ones; one certificate serves both). Keys 0600.
// QEMU reads them at every migration, so a renewed certificate needs no
// restart. Files that already hold the same bytes are left alone.
Status writeMigrationTls(const NodeTls& tls, const std::string& dir);

}  // namespace vmhost::cli
