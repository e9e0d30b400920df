// The cluster's small PKI, on OpenSSL: a CA that `vmhost init` creates, the
// controller's serving certificate, and node certificates issued from the
// CSR a node sends when it joins with the join token (as kubelet's TLS
// bootstrap does). Keys are EC P-256; everything is PEM text.
#pragma once

#include "result.h"

#include <string>
#include <vector>

namespace vmhost::pki {

struct KeyPair {
  std::string keyPem;   // PKCS#8 private key
  std::string certPem;  // X.509 certificate
};

// A new EC P-256 private key (PEM).
Result<std::string> generateKey();

// A self-signed CA certificate for `commonName`, valid `days`.
Result<KeyPair> createCa(const std::string& commonName, int days);

// A certificate for `keyPem`'s public key signed by `ca`: CN `commonName`,
// subjectAltNames `sans` (IP addresses become IP and DNS entries, names DNS
// entries), extended key usage server and/or client auth.
Result<std::string> issue(const KeyPair& ca, const std::string& publicKeyOrKeyPem,
                          const std::string& commonName, const std::vector<std::string>& sans,
                          bool server, bool client, int days);

// A PKCS#10 request for `keyPem` with CN `commonName`.
Result<std::string> createCsr(const std::string& keyPem, const std::string& commonName);

// Checks a CSR's own signature and returns its CN and public key (PEM).
struct CsrInfo {
  std::string commonName;
  std::string publicKeyPem;
};
Result<CsrInfo> readCsr(const std::string& csrPem);

// The CN of a certificate.
Result<std::string> commonName(const std::string& certPem);

// `bytes` random bytes as lower-case hex (for tokens).
std::string randomHex(size_t bytes);

// Writes `text` to `path` with mode `mode` (0600 for keys and tokens),
// atomically (temp file + rename).
Status writeFile(const std::string& path, const std::string& text, unsigned mode);
Result<std::string> readFile(const std::string& path);

}  // namespace vmhost::pki
