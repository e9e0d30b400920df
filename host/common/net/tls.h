// The one place a kj::TlsContext is built: the API (https), the node
// server (mutual TLS) and the node's RPC client all ask here, so the trust
// rules (no system trust store, the cluster CA only, a handshake timeout on
// servers) cannot drift apart between them.
#pragma once

#include "common/result.h"

#include <kj/compat/tls.h>
#include <kj/timer.h>

#include <memory>
#include <string>

namespace vmhost::net {

// PEM material. A server needs certPem and keyPem; caPem is what it
// verifies clients with (mutual TLS) or, for a client, the only CA whose
// servers it trusts.
struct TlsMaterial {
  std::string caPem;
  std::string certPem;
  std::string keyPem;
};

// A context and the parsed material it was made from, kept together for
// its lifetime.
struct Tls {
  kj::Maybe<kj::TlsKeypair> keypair;
  kj::Maybe<kj::TlsCertificate> ca;
  kj::Own<kj::TlsContext> context;
};

enum class ClientCertificates : uint8_t { kNotAsked, kRequired };

// A server context presenting certPem/keyPem. With kRequired, clients must
// present a certificate signed by caPem. Handshakes time out after
// `acceptTimeout` on `timer`, so a silent peer cannot hold a connection.
// INVALID_ARGUMENT naming `what` and the cause for unusable material.
Result<std::unique_ptr<Tls>> serverTls(const TlsMaterial& material, ClientCertificates clients,
                                       kj::Timer& timer, const std::string& what,
                                       kj::Duration acceptTimeout = 10 * kj::SECONDS);

// A client context trusting only caPem and presenting certPem/keyPem when
// both are given.
Result<std::unique_ptr<Tls>> clientTls(const TlsMaterial& material, const std::string& what);

}  // namespace vmhost::net
