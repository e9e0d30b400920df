// The API server: Kubernetes-style HTTP/JSON over kj-http, so kubectl works
// against vmhost unmodified.
//
// Served:
//   /version /healthz /livez /readyz /metrics
//   /api /api/v1 /apis /apis/<group> /apis/<group>/<version>       discovery
//   /api/v1/namespaces[/<name>]      read-only: "default" and every namespace with a VM
//   /openapi/v2 /openapi/v3 /openapi/v3/apis/<group>/<version>       schemas
//   /apis/vmhost.io/v1/namespaces/<ns>/virtualmachines[/<name>[/status]]
//   /apis/vmhost.io/v1/namespaces/<ns>/virtualmachines/<name>/console  WebSocket:
//       the guest's serial console, raw bytes in binary frames both ways
//   /apis/vmhost.io/v1/nodes[/<name>[/status]]                       cluster-scoped
//   /apis/kubevirt.io/v1alpha1/namespaces/<ns>/vms[/<name>[/status]]  the seed's VM
//   (and the all-namespaces lists /apis/<g>/<v>/virtualmachines, .../vms)
//
// Verbs: get, list (labelSelector, fieldSelector, limit/continue), watch
// (?watch=true, chunked JSON events, 410 as an ERROR event), create, update
// (resourceVersion optimistic concurrency), patch (merge and JSON patch),
// delete (finalizers honoured), and the status subresource. Table output
// for `kubectl get`; fieldValidation=Strict|Warn|Ignore; dryRun=All.
// Errors are metav1.Status objects with Kubernetes' codes and reasons; a
// rejected request writes nothing to the store. Bodies may be JSON or YAML
// (application/yaml, for vmctl), at most ServerOptions::maxBodyBytes.
// /metrics renders the shared registry: apiserver_request_total and
// apiserver_request_duration_seconds come from here, the rest from the
// components that share the registry.
//
// The store is the only state: whatever the API writes, reconcilers see
// through Store::watch() on the same store (api/objects.h has the codec).
//
// Layout (one place per concept): http.h (requests, replies, bodies),
// auth.h, resource.h + rest.h (the generic REST machinery),
// resources/ (one file per resource, and the registry table), discovery.h,
// openapi.h, namespaces.h, console_route.h, certificate_route.h; this file
// only wires them.
//
// Threading: the server runs its own KJ event loop on one thread. Handlers
// call the (thread-safe, synchronous) store from that thread; store watch
// notifications from other threads wake the loop through cross-thread
// fulfillers.
#pragma once

#include "api/console.h"
#include "apiserver/certificate_route.h"
#include "common/metrics.h"
#include "common/result.h"
#include "store/store.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace vmhost::apiserver {

struct ServerOptions {
  // "127.0.0.1:0" picks a free port (see Server::port()).
  std::string listenAddress = "127.0.0.1:8080";
  // Request bodies above this are refused with 413, as kube-apiserver's
  // 3 MiB limit (objects themselves are limited by the store, 1.5 MiB).
  size_t maxBodyBytes = 3u * 1024u * 1024u;
  // A watch without timeoutSeconds ends after this long (kube-apiserver's
  // default minimum request timeout); clients re-watch.
  std::chrono::seconds maxWatchTimeout{1800};
  // Reported in /version (gitVersion "v1.32.0+vmhost-<version>").
  std::string vmhostVersion = "0.1.0";
  // Serves .../virtualmachines/<name>/console; nullptr answers 503. Not
  // owned; must outlive the Server.
  api::ConsoleProvider* consoles = nullptr;

  // https with this certificate and key (PEM) when both are set.
  std::string tlsCertPem, tlsKeyPem;
  // Bearer tokens the API accepts ("Authorization: Bearer T"); empty: no
  // authentication (the all-in-one on loopback). /healthz, /livez and
  // /readyz stay open, as kube-apiserver's do.
  std::vector<std::string> bearerTokens;
  // POST /apis/vmhost.io/v1/nodes/<name>/certificate, authenticated with
  // `joinToken` (not an API token): signs a joining node's certificate
  // request (PEM body) and returns {"certificate": PEM}. Unset: 404.
  CertificateIssuer issueNodeCertificate;
  std::string joinToken;
};

class Server {
 public:
  // `store` and `metrics` must outlive the Server.
  Server(store::Store& store, metrics::Registry& metrics, ServerOptions options = {});
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving on a thread of its own. Returns the bound port.
  // UNAVAILABLE if the address cannot be bound; FAILED_PRECONDITION if
  // already started.
  Result<uint16_t> start();

  // Stops listening, ends open watches and joins the thread. Idempotent.
  void stop();

  // The bound port (0 before start()).
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmhost::apiserver
