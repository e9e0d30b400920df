#include "common/net/tls.h"

#include <kj/debug.h>

namespace vmhost::net {

namespace {

Error unusable(const std::string& what, const kj::Exception& e) {
  return Error{VMHOST_ERR_INVALID_ARGUMENT,
               what + ": the TLS material is unusable: " + e.getDescription().cStr(), false};
}

}  // namespace

Result<std::unique_ptr<Tls>> serverTls(const TlsMaterial& material, ClientCertificates clients,
                                       kj::Timer& timer, const std::string& what,
                                       kj::Duration acceptTimeout) {
  if (material.certPem.empty() || material.keyPem.empty()) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, what + ": a TLS server needs a certificate and a key",
                 false};
  }
  if (clients == ClientCertificates::kRequired && material.caPem.empty()) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 what + ": verifying client certificates needs the CA certificate", false};
  }
  auto tls = std::make_unique<Tls>();
  try {
    tls->keypair = kj::TlsKeypair{kj::TlsPrivateKey(material.keyPem.c_str()),
                                  kj::TlsCertificate(material.certPem.c_str())};
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;
    o.defaultKeypair = KJ_ASSERT_NONNULL(tls->keypair);
    if (clients == ClientCertificates::kRequired) {
      tls->ca = kj::TlsCertificate(material.caPem.c_str());
      o.verifyClients = true;
      o.trustedCertificates = kj::arrayPtr(&KJ_ASSERT_NONNULL(tls->ca), 1);
    }
    o.timer = timer;
    o.acceptTimeout = acceptTimeout;
    tls->context = kj::heap<kj::TlsContext>(kj::mv(o));
  } catch (const kj::Exception& e) {
    return unusable(what, e);
  }
  return tls;
}

Result<std::unique_ptr<Tls>> clientTls(const TlsMaterial& material, const std::string& what) {
  if (material.caPem.empty()) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, what + ": a TLS client needs the CA certificate",
                 false};
  }
  auto tls = std::make_unique<Tls>();
  try {
    tls->ca = kj::TlsCertificate(material.caPem.c_str());
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;
    o.trustedCertificates = kj::arrayPtr(&KJ_ASSERT_NONNULL(tls->ca), 1);
    if (!material.certPem.empty() && !material.keyPem.empty()) {
      tls->keypair = kj::TlsKeypair{kj::TlsPrivateKey(material.keyPem.c_str()),
                                    kj::TlsCertificate(material.certPem.c_str())};
      o.defaultKeypair = KJ_ASSERT_NONNULL(tls->keypair);
    }
    tls->context = kj::heap<kj::TlsContext>(kj::mv(o));
  } catch (const kj::Exception& e) {
    return unusable(what, e);
  }
  return tls;
}

}  // namespace vmhost::net
