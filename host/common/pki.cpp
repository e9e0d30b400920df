#include "pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace vmhost::pki {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Pkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;

Error sslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return Error{VMHOST_ERR_INTERNAL, what + ": " + buf, false};
}

Bio memBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string bioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Pkey> readKey(const std::string& pem) {
  auto bio = memBio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    // A public key alone (from a CSR). The failed attempt leaves an error
    // in OpenSSL's per-thread queue; TLS code on this thread (kj-tls) would
    // later mistake it for its own.
    ERR_clear_error();
    auto bio2 = memBio(pem);
    key.reset(PEM_read_bio_PUBKEY(bio2.get(), nullptr, nullptr, nullptr));
  }
  if (!key) return sslError("reading a key");
  return key;
}

Result<Cert> readCert(const std::string& pem) {
  auto bio = memBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return sslError("reading a certificate");
  return cert;
}

std::string keyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bioText(bio.get());
}

std::string certPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return bioText(bio.get());
}

bool addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

Result<Cert> newCert(EVP_PKEY* subjectKey, const std::string& cn, int days) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 24 * 3600);
  X509_set_pubkey(cert.get(), subjectKey);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

// Leaves OpenSSL's per-thread error queue empty on every return path.
struct ClearErrors {
  ~ClearErrors() { ERR_clear_error(); }
};

}  // namespace

Result<std::string> generateKey() {
  ClearErrors clear;
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) return sslError("generating an EC P-256 key");
  return keyPem(key.get());
}

Result<KeyPair> createCa(const std::string& cn, int days) {
  ClearErrors clear;
  auto pem = generateKey();
  if (!pem.ok()) return pem.error();
  auto key = readKey(pem.value());
  if (!key.ok()) return key.error();
  auto cert = newCert(key.value().get(), cn, days);
  if (!cert.ok()) return cert.error();
  X509* c = cert.value().get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  if (!addExt(c, c, NID_basic_constraints, "critical,CA:TRUE") ||
      !addExt(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !addExt(c, c, NID_subject_key_identifier, "hash")) {
    return sslError("CA extensions");
  }
  if (X509_sign(c, key.value().get(), EVP_sha256()) <= 0) return sslError("signing the CA");
  return KeyPair{pem.value(), certPem(c)};
}

Result<std::string> issue(const KeyPair& ca, const std::string& subjectPem, const std::string& cn,
                          const std::vector<std::string>& sans, bool server, bool client,
                          int days) {
  ClearErrors clear;
  auto caKey = readKey(ca.keyPem);
  if (!caKey.ok()) return caKey.error();
  auto caCert = readCert(ca.certPem);
  if (!caCert.ok()) return caCert.error();
  auto subject = readKey(subjectPem);
  if (!subject.ok()) return subject.error();
  auto cert = newCert(subject.value().get(), cn, days);
  if (!cert.ok()) return cert.error();
  X509* c = cert.value().get();
  X509_set_issuer_name(c, X509_get_subject_name(caCert.value().get()));
  std::string usage = server && client ? "serverAuth,clientAuth"
                      : server         ? "serverAuth"
                                       : "clientAuth";
  std::string altNames;
  for (const auto& s : sans) {
    unsigned char buf[16];
    bool ip = inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
    if (!altNames.empty()) altNames += ",";
    // An IP is listed as a DNS name too: TLS clients that check the peer
    // by host name (kj's) then accept a connection made to the address.
    altNames += ip ? "IP:" + s + ",DNS:" + s : "DNS:" + s;
  }
  if (!addExt(c, caCert.value().get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !addExt(c, caCert.value().get(), NID_key_usage,
              "critical,digitalSignature,keyEncipherment") ||
      !addExt(c, caCert.value().get(), NID_ext_key_usage, usage) ||
      (!altNames.empty() && !addExt(c, caCert.value().get(), NID_subject_alt_name, altNames))) {
    return sslError("certificate extensions");
  }
  if (X509_sign(c, caKey.value().get(), EVP_sha256()) <= 0) return sslError("signing");
  return certPem(c);
}

Result<std::string> createCsr(const std::string& pem, const std::string& cn) {
  ClearErrors clear;
  auto key = readKey(pem);
  if (!key.ok()) return key.error();
  Req req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key.value().get());
  if (X509_REQ_sign(req.get(), key.value().get(), EVP_sha256()) <= 0) return sslError("CSR");
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return bioText(bio.get());
}

Result<CsrInfo> readCsr(const std::string& pem) {
  ClearErrors clear;
  auto bio = memBio(pem);
  Req req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return Error{VMHOST_ERR_INVALID_ARGUMENT, "not a PEM certificate request", false};
  Pkey key(X509_REQ_get_pubkey(req.get()));
  if (!key || X509_REQ_verify(req.get(), key.get()) != 1) {
    ERR_clear_error();
    return Error{VMHOST_ERR_INVALID_ARGUMENT, "the certificate request's signature is invalid",
                 false};
  }
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req.get()), NID_commonName, cn, sizeof cn);
  Bio out(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(out.get(), key.get());
  return CsrInfo{cn, bioText(out.get())};
}

Result<std::string> commonName(const std::string& pem) {
  ClearErrors clear;
  auto cert = readCert(pem);
  if (!cert.ok()) return cert.error();
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.value().get()), NID_commonName, cn,
                            sizeof cn);
  return std::string(cn);
}

std::string randomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

Status writeFile(const std::string& path, const std::string& text, unsigned mode) {
  std::string tmp = path + ".tmp-" + randomHex(4);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return Error{VMHOST_ERR_PERMISSION_DENIED, "cannot create " + tmp + ": " + std::strerror(errno),
                 false};
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error{VMHOST_ERR_UNAVAILABLE, "cannot write " + tmp, false};
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Error{VMHOST_ERR_UNAVAILABLE, "cannot rename " + tmp + " to " + path, false};
  }
  return Ok{};
}

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{VMHOST_ERR_NOT_FOUND, "cannot read " + path, false};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vmhost::pki
