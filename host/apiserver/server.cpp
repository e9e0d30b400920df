#include "apiserver/server.h"

#include "apiserver/auth.h"
#include "apiserver/console_route.h"
#include "apiserver/discovery.h"
#include "apiserver/http.h"
#include "apiserver/namespaces.h"
#include "apiserver/openapi.h"
#include "apiserver/resource.h"
#include "apiserver/resources/registry.h"
#include "common/net/event_loop_thread.h"
#include "common/net/tls.h"

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/compat/tls.h>
#include <kj/debug.h>

#include <array>
#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

namespace vmhost::apiserver {

namespace {

// Serves one request at a time per connection on the server's loop:
// authenticate, read the body (bounded), route, answer, count.
class ApiService final : public kj::HttpService {
 public:
  ApiService(store::Store& store, metrics::Registry& metrics, const ServerOptions& options,
             kj::Timer& timer, const kj::HttpHeaderTable& table, const HeaderIds& ids,
             std::atomic<uint16_t>& port)
      : store_(store),
        metrics_(metrics),
        options_(options),
        table_(table),
        ids_(ids),
        port_(port),
        credentials_{options.bearerTokens, options.joinToken} {
    std::vector<ResourceInfo> infos;
    for (const auto& r : registeredResources()) {
      handlers_.push_back(r.make(r.info, Services{store, timer, options.maxWatchTimeout}));
      infos.push_back(r.info);
    }
    discovery_.emplace(std::move(infos), options.vmhostVersion);
    docs_ = buildOpenApiDocs(registeredResources(), options.vmhostVersion);
    auto requests = metrics.counter(
        "apiserver_request_total",
        "Counter of API requests broken out by verb, group, version, resource, subresource and "
        "HTTP response code.",
        {"verb", "group", "version", "resource", "subresource", "code"});
    auto latency = metrics.histogram(
        "apiserver_request_duration_seconds",
        "Response latency distribution in seconds by verb, group, version, resource and "
        "subresource (watches excluded).",
        {"verb", "group", "version", "resource", "subresource"});
    requests_ = requests ? *requests : nullptr;
    latency_ = latency ? *latency : nullptr;
  }

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override {
    auto start = Clock::now();
    auto state = kj::heap<Exchange>();
    Request& req = state->req;
    req.method = kj::str(method).cStr();
    req.verb = verbOf(method);
    parseTarget(std::string(url.cStr()), req);
    req.headers = &headers;
    state->out.emplace(response, table_, ids_,
                       [this, &req, start](unsigned code) { record(req, code, start); });
    Responder& out = *state->out;
    std::string authorization;
    KJ_IF_MAYBE (a, headers.get(ids_.authorization)) {
      authorization = a->cStr();
    }
    if (auto denied = authenticate(req, authorization, credentials_)) {
      return out.send(kj::mv(*denied)).attach(kj::mv(state));
    }
    KJ_IF_MAYBE (a, headers.get(ids_.accept)) {
      req.accept = a->cStr();
    }
    KJ_IF_MAYBE (c, headers.get(kj::HttpHeaderId::CONTENT_TYPE)) {
      req.contentType = mediaType(c->cStr());
    }
    req.wantTable = req.accept.find("as=Table") != std::string::npos;
    std::string fv = req.param("fieldValidation");
    req.fieldValidation = fv == "Strict"   ? api::FieldValidation::kStrict
                          : fv == "Ignore" ? api::FieldValidation::kIgnore
                                           : api::FieldValidation::kWarn;
    req.dryRun = req.param("dryRun") == "All";

    bool hasBody = req.verb == Verb::kPost || req.verb == Verb::kPut || req.verb == Verb::kPatch ||
                   req.verb == Verb::kDelete;
    if (!hasBody) return dispatch(req, out).attach(kj::mv(state));
    KJ_IF_MAYBE (len, body.tryGetLength()) {
      if (*len > options_.maxBodyBytes) return out.send(tooLarge()).attach(kj::mv(state));
    }
    return readBody(body, req.body, options_.maxBodyBytes)
        .then([this, &req, &out](bool fits) -> kj::Promise<void> {
          if (!fits) return out.send(tooLarge());
          return dispatch(req, out);
        })
        .attach(kj::mv(state));
  }

 private:
  // What lives as long as one request.
  struct Exchange {
    Request req;
    std::optional<Responder> out;
  };

  Reply tooLarge() const {
    return statusReply(413, "RequestEntityTooLarge",
                       "the request body is larger than the limit of " +
                           std::to_string(options_.maxBodyBytes) + " bytes");
  }

  ResourceHandler* handlerFor(const Route& r) {
    for (auto& h : handlers_) {
      if (h->info.group == r.group && h->info.version == r.version &&
          h->info.plural == r.resource) {
        return h.get();
      }
    }
    return nullptr;
  }

  kj::Promise<void> dispatch(Request& req, Responder& out) {
    try {
      if (auto route = parseRoute(req)) {
        if (ResourceHandler* h = handlerFor(*route)) return resource(*h, *route, req, out);
      }
      return out.send(nonResource(req));
    } catch (const std::exception& e) {
      return out.send(statusReply(500, "InternalError", e.what()));
    }
  }

  kj::Promise<void> resource(ResourceHandler& h, const Route& route, Request& req, Responder& out) {
    const ResourceInfo& info = h.info;
    if (scopeMatches(info, route, req)) {
      if (route.subresource == "console" && info.group == api::kGroup &&
          info.plural == "virtualmachines") {
        return serveConsole(route, req, out, store_, options_.consoles);
      }
      if (route.subresource == "certificate" && info.plural == "nodes" &&
          options_.issueNodeCertificate) {
        return out.send(serveNodeCertificate(route.name, req, options_.issueNodeCertificate));
      }
    }
    return serveResource(h, route, req, out);
  }

  Reply nonResource(const Request& req) {
    const auto& s = req.segments;
    if (req.verb != Verb::kGet) {
      if (!s.empty() && (s[0] == "apis" || s[0] == "api")) return notFoundReply();
      return methodNotAllowed();
    }
    if (s.size() == 1 && (s[0] == "healthz" || s[0] == "livez" || s[0] == "readyz")) {
      auto rev = store_.currentRevision();
      if (!rev) return Reply{503, "store unavailable: " + rev.error().message, "text/plain", {}};
      return Reply{200, "ok", "text/plain", {}};
    }
    if (s.size() == 1 && s[0] == "metrics") {
      // VMs by phase are the scheduling controller's gauge (it holds them
      // in memory); the API server only exposes the shared registry.
      return Reply{200, metrics_.render(), metrics::Registry::kContentType, {}};
    }
    if ((s.size() == 3 || s.size() == 4) && s[0] == "api" && s[1] == "v1" && s[2] == "namespaces") {
      return serveNamespaces(store_, req, s.size() == 4 ? s[3] : "");
    }
    if (auto r = discovery_->serve(req, port_.load())) return kj::mv(*r);
    if (auto r = serveOpenApi(docs_, req)) return kj::mv(*r);
    return notFoundReply();
  }

  // verb, group, version, resource, subresource for metrics.
  std::array<std::string, 5> labels(const Request& req) const {
    std::array<std::string, 5> l;
    switch (req.verb) {
      case Verb::kGet:
        l[0] = req.flag("watch") ? "WATCH" : "GET";
        break;
      case Verb::kPost:
        l[0] = "POST";
        break;
      case Verb::kPut:
        l[0] = "PUT";
        break;
      case Verb::kPatch:
        l[0] = "PATCH";
        break;
      case Verb::kDelete:
        l[0] = "DELETE";
        break;
      default:
        l[0] = "OTHER";
        break;
    }
    if (auto route = parseRoute(req)) {
      l[1] = route->group;
      l[2] = route->version;
      l[3] = route->resource;
      l[4] = route->subresource;
      if (req.verb == Verb::kGet && !req.flag("watch") && route->name.empty()) l[0] = "LIST";
    }
    return l;
  }

  void record(const Request& req, unsigned code, Clock::time_point start) {
    auto l = labels(req);
    if (requests_) requests_->inc({l[0], l[1], l[2], l[3], l[4], std::to_string(code)});
    if (latency_ && l[0] != "WATCH") {
      double secs = std::chrono::duration<double>(Clock::now() - start).count();
      latency_->observe({l[0], l[1], l[2], l[3], l[4]}, secs);
    }
  }

  store::Store& store_;
  metrics::Registry& metrics_;
  const ServerOptions& options_;
  const kj::HttpHeaderTable& table_;
  const HeaderIds& ids_;
  std::atomic<uint16_t>& port_;
  Credentials credentials_;
  std::vector<std::unique_ptr<ResourceHandler>> handlers_;
  std::optional<Discovery> discovery_;
  OpenApiDocs docs_;
  metrics::Counter* requests_ = nullptr;
  metrics::Histogram* latency_ = nullptr;
};

}  // namespace

struct Server::Impl {
  Impl(store::Store& s, metrics::Registry& m, ServerOptions o)
      : store(s), metrics(m), options(std::move(o)) {}
  store::Store& store;
  metrics::Registry& metrics;
  ServerOptions options;
  std::atomic<uint16_t> port{0};
  net::EventLoopThread loop;

  void run(net::LoopContext& ctx) {
    kj::HttpHeaderTable::Builder builder;
    HeaderIds ids{builder.add("Accept"), builder.add("Warning"), builder.add("Authorization")};
    auto table = builder.build();
    ApiService service(store, metrics, options, ctx.timer(), *table, ids, port);
    kj::HttpServer http(ctx.timer(), *table, service);
    auto addr =
        ctx.io.provider->getNetwork().parseAddress(options.listenAddress).wait(ctx.io.waitScope);
    kj::Own<kj::ConnectionReceiver> listener = addr->listen();
    port = static_cast<uint16_t>(listener->getPort());
    std::unique_ptr<net::Tls> tls;
    if (!options.tlsCertPem.empty() && !options.tlsKeyPem.empty()) {
      auto made = net::serverTls({"", options.tlsCertPem, options.tlsKeyPem},
                                 net::ClientCertificates::kNotAsked, ctx.timer(),
                                 "the API on " + options.listenAddress);
      if (!made.ok()) return ctx.failed(made.error());
      tls = std::move(made.value());
      listener = tls->context->wrapPort(kj::mv(listener));
    }
    ctx.ready(port.load());
    http.listenHttp(*listener).exclusiveJoin(ctx.stopped()).wait(ctx.io.waitScope);
  }
};

Server::Server(store::Store& store, metrics::Registry& metrics, ServerOptions options)
    : impl_(std::make_unique<Impl>(store, metrics, std::move(options))) {}

Server::~Server() { stop(); }

Result<uint16_t> Server::start() {
  return impl_->loop.start("the API on " + impl_->options.listenAddress,
                           [this](net::LoopContext& ctx) { impl_->run(ctx); });
}

void Server::stop() { impl_->loop.stop(); }

uint16_t Server::port() const { return impl_->port.load(); }

}  // namespace vmhost::apiserver
