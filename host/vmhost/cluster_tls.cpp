#include "vmhost/cluster_tls.h"

#include "cli/http_client.h"
#include "common/pki.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <regex>

namespace vmhost::cli {
namespace {

namespace fs = std::filesystem;

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace

Result<std::optional<ControllerTls>> loadControllerTls(const std::string& dataDir) {
  fs::path dir(dataDir);
  fs::path pkiDir = dir / "pki";
  if (!fs::exists(pkiDir / "ca.crt")) return std::optional<ControllerTls>{};
  ControllerTls t;
  t.pkiDir = pkiDir.string();
  struct Item {
    fs::path path;
    std::string* out;
  } items[] = {{pkiDir / "ca.crt", &t.ca.certPem},      {pkiDir / "ca.key", &t.ca.keyPem},
               {pkiDir / "controller.crt", &t.certPem}, {pkiDir / "controller.key", &t.keyPem},
               {dir / "join-token", &t.joinToken},      {dir / "api-token", &t.apiToken}};
  for (auto& item : items) {
    auto text = pki::readFile(item.path.string());
    if (!text.ok()) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   item.path.string() + ": missing (the data directory holds a partial `vmhost " +
                       "init`; run it again in an empty directory)",
                   false};
    }
    *item.out = text.value();
  }
  t.joinToken = trimmed(t.joinToken);
  t.apiToken = trimmed(t.apiToken);
  return std::optional<ControllerTls>(std::move(t));
}

Result<std::string> issueNodeCertificate(const ControllerTls& tls, const std::string& node,
                                         const std::string& csrPem) {
  static const std::regex kName("[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?");
  if (!std::regex_match(node, kName)) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, "invalid node name '" + node + "'", false};
  }
  auto csr = pki::readCsr(csrPem);
  if (!csr.ok()) return csr.error();
  if (csr.value().commonName != node) {
    return Error{
        VMHOST_ERR_INVALID_ARGUMENT,
        "the certificate request is for '" + csr.value().commonName + "', not node '" + node + "'",
        false};
  }
  // One certificate per node name: a token holder cannot take over the
  // name of a node that already joined.
  fs::path issued = fs::path(tls.pkiDir) / "issued" / (node + ".crt");
  if (fs::exists(issued)) {
    return Error{VMHOST_ERR_ALREADY_EXISTS,
                 "node " + node + " already has a certificate; to re-issue it, remove " +
                     issued.string() + " on the controller",
                 false};
  }
  // Client (the node joins the controller) and server (the node is the
  // target of TLS live migrations, whose certificate QEMU checks against the
  // node's name).
  auto cert = pki::issue(tls.ca, csr.value().publicKeyPem, node, {}, /*server=*/true,
                         /*client=*/true, 365);
  if (!cert.ok()) return cert.error();
  std::error_code ec;
  fs::create_directories(issued.parent_path(), ec);
  if (auto s = pki::writeFile(issued.string(), cert.value(), 0644); !s.ok()) return s.error();
  return cert.value();
}

Result<NodeTls> bootstrapNode(const HostConfig& config) {
  NodeTls t;
  auto ca = pki::readFile(config.cluster.caFile);
  if (!ca.ok()) return Error{VMHOST_ERR_NOT_FOUND, "cluster.caFile: " + ca.error().message, false};
  t.caPem = ca.value();
  fs::path pkiDir = fs::path(config.dataDir) / "pki";
  fs::path keyFile = pkiDir / "node.key", certFile = pkiDir / "node.crt";
  if (fs::exists(certFile) && fs::exists(keyFile)) {
    auto key = pki::readFile(keyFile.string());
    auto cert = pki::readFile(certFile.string());
    if (!key.ok() || !cert.ok()) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION, "cannot read " + pkiDir.string(), false};
    }
    auto cn = pki::commonName(cert.value());
    if (cn.ok() && cn.value() != config.node.name) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   certFile.string() + " is node '" + cn.value() + "''s certificate, not '" +
                       config.node.name + "''s",
                   false};
    }
    t.keyPem = key.value();
    t.certPem = cert.value();
    return t;
  }
  if (config.cluster.joinToken.empty()) {
    return Error{VMHOST_ERR_FAILED_PRECONDITION,
                 "this node has no certificate yet: cluster.joinToken or joinTokenFile is needed "
                 "to get one",
                 false};
  }
  auto key = pki::generateKey();
  if (!key.ok()) return key.error();
  auto csr = pki::createCsr(key.value(), config.node.name);
  if (!csr.ok()) return csr.error();
  HttpClient http(config.cluster.apiServer, config.cluster.joinToken);
  http.setCaFile(config.cluster.caFile);
  auto r = http.request("POST", "/apis/vmhost.io/v1/nodes/" + config.node.name + "/certificate",
                        csr.value(), "application/x-pem-file");
  if (!r.ok()) return r.error();
  auto body = nlohmann::json::parse(r.value().body, nullptr, false);
  if (r.value().status != 201 || !body.is_object() || !body.contains("certificate")) {
    std::string message =
        body.is_object() && body.contains("message") && body["message"].is_string()
            ? body["message"].get<std::string>()
            : r.value().body.substr(0, 200);
    return Error{VMHOST_ERR_PERMISSION_DENIED,
                 "the controller refused this node's certificate request (HTTP " +
                     std::to_string(r.value().status) + "): " + message,
                 false};
  }
  t.keyPem = key.value();
  t.certPem = body["certificate"].get<std::string>();
  std::error_code ec;
  fs::create_directories(pkiDir, ec);
  if (auto s = pki::writeFile(keyFile.string(), t.keyPem, 0600); !s.ok()) return s.error();
  if (auto s = pki::writeFile(certFile.string(), t.certPem, 0644); !s.ok()) return s.error();
  return t;
}

Status writeMigrationTls(const NodeTls& tls, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Error{VMHOST_ERR_FAILED_PRECONDITION,
                 "node.migrationTlsDir " + dir + ": cannot create it: " + ec.message(), false};
  }
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  const struct {
    const char* name;
    const std::string* pem;
    int mode;
  } files[] = {{"ca-cert.pem", &tls.caPem, 0644},
               {"server-cert.pem", &tls.certPem, 0644},
               {"server-key.pem", &tls.keyPem, 0600},
               {"client-cert.pem", &tls.certPem, 0644},
               {"client-key.pem", &tls.keyPem, 0600}};
  for (const auto& f : files) {
    std::string path = (fs::path(dir) / f.name).string();
    auto cur = pki::readFile(path);
    if (cur.ok() && cur.value() == *f.pem) continue;
    if (auto s = pki::writeFile(path, *f.pem, f.mode); !s.ok()) {
      return Error{s.error().code, "node.migrationTlsDir: " + s.error().message, false};
    }
  }
  return Ok{};
}

}  // namespace vmhost::cli
