// The generic REST machinery, written once for every resource, as
// kube-apiserver's registry/generic: get, list (label and field selectors,
// limit/continue), watch (chunked JSON events, 410 as an ERROR event, objects
// entering and leaving a selection), create (generateName, uid, timestamps),
// update and patch (merge and JSON patch, resourceVersion optimistic
// concurrency, the status subresource), delete (finalizers, preconditions),
// Table output for kubectl, dryRun and fieldValidation.
//
// A resource describes itself with a traits struct Tr:
//   using T = <the typed object, with T::metadata an api::ObjectMeta>;
//   static api::Decoded<T> decode(const Json&, api::FieldValidation);
//   static api::FieldErrors validate(const T&);
//   static Json view(const T&);                        // the object as served
//   static Result<T> fromStore(const store::StoredObject&);
//   static std::string stored(const T&);               // the value to store
//   static store::Key key(const std::string& ns, const std::string& name);
//   static const char* storeResource();
//   static Json specOf(const T&);                      // generation bumps when it changes
//   static void onCreate(T&);                          // defaults, server-set status
//   static void keepFromCurrent(T& next, const T& cur);// what an update may not change
//   static void takeStatus(T& next, const T& in);      // what the status subresource changes
//   static Json columns(); static Json cells(const T&);           // Table output
//   static std::vector<std::string> fieldLabels();                // field selectors
//   static std::string field(const T&, const std::string& label);
#pragma once

#include "api/objects.h"
#include "api/selectors.h"
#include "apiserver/resource.h"
#include "common/waker.h"

#include <kj/async.h>
#include <kj/compat/http.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace vmhost::apiserver {

// For continue tokens: URL-safe base64 without padding.
std::string base64url(const std::string& in);
std::optional<std::string> unbase64url(const std::string& in);
// A resourceVersion (or limit, timeoutSeconds): decimal digits only.
std::optional<int64_t> parseRevision(const std::string& s);
// Five characters for generateName, from Kubernetes' alphabet.
std::string randomSuffix();

template <typename Tr>
class TypedHandler final : public ResourceHandler {
 public:
  using T = typename Tr::T;

  TypedHandler(ResourceInfo info, Services services)
      : ResourceHandler(std::move(info)), svc_(services) {}

  Reply get(const Request& req, const std::string& ns, const std::string& name) override {
    auto cur = load(ns, name);
    if (!cur) return storeErrorReply(info, name, cur.error());
    if (req.wantTable) {
      return jsonReply(200, table({cur.value()}, cur->metadata.resourceVersion, req, true));
    }
    return jsonReply(200, Tr::view(*cur));
  }

  Reply list(const Request& req, const std::string& ns) override {
    auto sel = selectors(req);
    if (auto* r = std::get_if<Reply>(&sel)) return *r;
    auto& [labels, fields] = std::get<Selectors>(sel);
    store::ListOptions opts;
    std::string listRv;
    if (auto limit = parseRevision(req.param("limit")); limit && *limit > 0) {
      opts.limit = static_cast<size_t>(*limit);
    }
    if (auto token = req.param("continue"); !token.empty()) {
      auto raw = unbase64url(token);
      Json t = raw ? Json::parse(*raw, nullptr, false) : Json();
      if (!t.is_object() || !t["ns"].is_string() || !t["name"].is_string() ||
          !t["rv"].is_string()) {
        return statusReply(410, "Expired", "the provided continue parameter is not valid");
      }
      opts.after = store::ListCursor{t["ns"], t["name"]};
      listRv = t["rv"];
    }
    auto res = svc_.store.list(Tr::storeResource(), ns, opts);
    if (!res) return storeErrorReply(info, "", res.error());
    if (listRv.empty()) listRv = std::to_string(res->revision);
    std::vector<T> items;
    for (const auto& o : res->items) {
      auto obj = Tr::fromStore(o);
      if (!obj) continue;  // undecodable values are skipped, not fatal to the list
      if (!matches(*obj, labels, fields)) continue;
      items.push_back(std::move(obj.value()));
    }
    Json meta = Json{{"resourceVersion", listRv}};
    if (res->next) {
      meta["continue"] =
          base64url(Json{{"rv", listRv}, {"ns", res->next->ns}, {"name", res->next->name}}.dump());
    }
    if (req.wantTable) {
      Json t = table(items, listRv, req, true);
      t["metadata"] = meta;
      return jsonReply(200, t);
    }
    Json j = Json::object();
    j["apiVersion"] = info.apiVersion();
    j["kind"] = info.kind + "List";
    j["metadata"] = meta;
    Json arr = Json::array();
    for (const auto& it : items) arr.push_back(Tr::view(it));
    j["items"] = std::move(arr);
    return jsonReply(200, j);
  }

  Reply create(const Request& req, const std::string& ns, const Json& body) override {
    if (auto r = checkTypeMeta(body)) return *r;
    auto d = Tr::decode(body, req.fieldValidation);
    T obj = std::move(d.value);
    if (!d.ok()) return withWarnings(invalidReply(info, obj.metadata.name, d.errors), d.warnings);
    if (info.namespaced) {
      if (!obj.metadata.ns.empty() && obj.metadata.ns != ns) {
        return badRequest(
            "the namespace of the provided object does not match the namespace sent on the "
            "request");
      }
      obj.metadata.ns = ns;
    } else {
      obj.metadata.ns.clear();
    }
    if (obj.metadata.name.empty() && !obj.metadata.generateName.empty()) {
      obj.metadata.name = obj.metadata.generateName + randomSuffix();
    }
    obj.metadata.uid = api::newUid();
    obj.metadata.creationTimestamp = api::nowRfc3339();
    obj.metadata.generation = 1;
    obj.metadata.resourceVersion.clear();
    obj.metadata.deletionTimestamp.reset();
    Tr::onCreate(obj);
    auto errs = Tr::validate(obj);
    if (!errs.empty()) return withWarnings(invalidReply(info, obj.metadata.name, errs), d.warnings);
    if (req.dryRun) return withWarnings(jsonReply(201, Tr::view(obj)), d.warnings);
    auto r = svc_.store.create(Tr::key(ns, obj.metadata.name), Tr::stored(obj));
    if (!r) return storeErrorReply(info, obj.metadata.name, r.error());
    obj.metadata.resourceVersion = std::to_string(r->modRevision);
    return withWarnings(jsonReply(201, Tr::view(obj)), d.warnings);
  }

  Reply update(const Request& req, const std::string& ns, const std::string& name, const Json& body,
               bool status) override {
    if (auto r = checkTypeMeta(body)) return *r;
    auto d = Tr::decode(body, req.fieldValidation);
    if (!d.ok()) return withWarnings(invalidReply(info, name, d.errors), d.warnings);
    if (auto r = checkIdentity(d.value, ns, name)) return *r;
    if (d.value.metadata.resourceVersion.empty()) {
      return invalidReply(
          info, name,
          {api::FieldError{api::FieldErrorType::kInvalid, "metadata.resourceVersion", "0x0",
                           "must be specified for an update"}});
    }
    auto rv = parseRevision(d.value.metadata.resourceVersion);
    if (!rv) return conflict(info, name, kModified);
    auto cur = load(ns, name);
    if (!cur) return storeErrorReply(info, name, cur.error());
    bool conflicted = false;
    return withWarnings(commit(req, *cur, std::move(d.value), *rv, status, conflicted), d.warnings);
  }

  Reply patch(const Request& req, const std::string& ns, const std::string& name,
              const Json& patchDoc, bool jsonPatch, bool status) override {
    // Without a resourceVersion in the patch, a concurrent write is not the
    // client's concern: re-read and re-apply, as kube-apiserver does.
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto cur = load(ns, name);
      if (!cur) return storeErrorReply(info, name, cur.error());
      Json target = Tr::view(*cur);
      try {
        if (jsonPatch) {
          target = target.patch(patchDoc);
        } else {
          target.merge_patch(patchDoc);
        }
      } catch (const std::exception& e) {
        std::string what = e.what();
        size_t b = what.find("] ");
        return statusReply(422, "Invalid",
                           "the JSON patch could not be applied: " +
                               (b == std::string::npos ? what : what.substr(b + 2)));
      }
      if (!target.is_object()) return badRequest("the patched object is not a JSON object");
      int64_t curRv = *parseRevision(cur->metadata.resourceVersion);
      int64_t expected = curRv;
      bool clientRv = false;
      if (auto m = target.find("metadata"); m != target.end() && m->is_object()) {
        auto rvIt = m->find("resourceVersion");
        if (rvIt != m->end() && rvIt->is_string() &&
            rvIt->get<std::string>() != cur->metadata.resourceVersion) {
          auto parsed = parseRevision(*rvIt);
          if (!parsed || *parsed != curRv) return conflict(info, name, kModified);
        }
        if (rvIt == m->end() || rvIt->is_null())
          (*m)["resourceVersion"] = cur->metadata.resourceVersion;
        clientRv = patchDoc.is_object() && patchDoc.contains("metadata") &&
                   patchDoc["metadata"].is_object() &&
                   patchDoc["metadata"].contains("resourceVersion");
      }
      auto d = Tr::decode(target, req.fieldValidation);
      if (!d.ok()) return withWarnings(invalidReply(info, name, d.errors), d.warnings);
      if (auto r = checkIdentity(d.value, ns, name)) return *r;
      bool conflicted = false;
      Reply r = commit(req, *cur, std::move(d.value), expected, status, conflicted);
      if (conflicted && !clientRv) continue;
      return withWarnings(std::move(r), d.warnings);
    }
    return conflict(info, name, kModified);
  }

  Reply remove(const Request& req, const std::string& ns, const std::string& name) override {
    auto cur = load(ns, name);
    if (!cur) return storeErrorReply(info, name, cur.error());
    if (!req.body.empty()) {
      auto parsed = parseBody(req.body, req.contentType);
      if (auto* r = std::get_if<Reply>(&parsed)) return *r;
      const Json& opts = std::get<Json>(parsed);
      if (opts.is_object() && opts.contains("preconditions") && opts["preconditions"].is_object()) {
        const Json& pre = opts["preconditions"];
        if (pre.contains("uid") && pre["uid"].is_string() &&
            pre["uid"].get<std::string>() != cur->metadata.uid) {
          return conflict(
              info, name,
              "Precondition failed: UID in precondition: " + pre["uid"].get<std::string>() +
                  ", UID in object meta: " + cur->metadata.uid);
        }
        if (pre.contains("resourceVersion") && pre["resourceVersion"].is_string() &&
            pre["resourceVersion"].get<std::string>() != cur->metadata.resourceVersion) {
          return conflict(info, name,
                          "Precondition failed: ResourceVersion in precondition: " +
                              pre["resourceVersion"].get<std::string>() +
                              ", ResourceVersion in object meta: " + cur->metadata.resourceVersion);
        }
      }
      if (opts.is_object() && opts.contains("dryRun") && opts["dryRun"].is_array() &&
          !opts["dryRun"].empty()) {
        return jsonReply(200, Tr::view(*cur));
      }
    }
    if (req.dryRun) return jsonReply(200, Tr::view(*cur));
    int64_t curRv = *parseRevision(cur->metadata.resourceVersion);
    auto key = Tr::key(ns, name);
    if (!cur->metadata.finalizers.empty()) {
      // Finalizers hold the object: mark it; the last finalizer's removal deletes it.
      if (cur->metadata.deletionTimestamp) return jsonReply(200, Tr::view(*cur));
      T next = *cur;
      next.metadata.deletionTimestamp = api::nowRfc3339();
      next.metadata.generation += 1;
      auto r = svc_.store.update(key, Tr::stored(next), curRv);
      if (!r) return storeErrorReply(info, name, r.error());
      next.metadata.resourceVersion = std::to_string(r->modRevision);
      return jsonReply(200, Tr::view(next));
    }
    auto r = svc_.store.remove(key, curRv);
    if (!r) return storeErrorReply(info, name, r.error());
    T gone = *cur;
    gone.metadata.resourceVersion = std::to_string(r->modRevision);
    return jsonReply(200, Tr::view(gone));
  }

  kj::Promise<void> watch(const Request& req, const std::string& ns, Responder& out) override {
    auto w = startWatch(req, ns, out);
    if (auto* r = std::get_if<Reply>(&w)) return out.send(std::move(*r));
    return kj::mv(std::get<kj::Promise<void>>(w));
  }

 private:
  // Either a Reply (an error before streaming) or the promise that streams.
  std::variant<Reply, kj::Promise<void>> startWatch(const Request& req, const std::string& ns,
                                                    Responder& out) {
    auto sel = selectors(req);
    if (auto* r = std::get_if<Reply>(&sel)) return *r;
    auto st = kj::heap<WatchState>();
    st->labels = std::get<Selectors>(sel).labels;
    st->fields = std::get<Selectors>(sel).fields;
    st->wantTable = req.wantTable;
    st->request = req;
    std::string rvParam = req.param("resourceVersion");
    int64_t from = 0;
    std::string initial;
    if (rvParam.empty() || rvParam == "0") {
      // Kubernetes semantics: synthetic ADDED events for what exists, then changes.
      auto res = svc_.store.list(Tr::storeResource(), ns);
      if (!res) return storeErrorReply(info, "", res.error());
      from = res->revision;
      st->selectedComplete = true;
      for (const auto& o : res->items) {
        auto obj = Tr::fromStore(o);
        if (obj && matches(*obj, st->labels, st->fields)) {
          initial += eventLine(*st, "ADDED", *obj);
          st->selected.insert(o.key.ns + "/" + o.key.name);
        }
      }
    } else {
      auto rv = parseRevision(rvParam);
      if (!rv) return badRequest("invalid resourceVersion \"" + rvParam + "\"");
      from = *rv;
      if (!st->labels.empty() || !st->fields.empty()) {
        // What the client's list (taken at `from`, usually just now) showed
        // as selected; exact if nothing was written since.
        auto res = svc_.store.list(Tr::storeResource(), ns);
        if (res && res->revision == from) {
          for (const auto& o : res->items) {
            auto obj = Tr::fromStore(o);
            if (obj && matches(*obj, st->labels, st->fields)) {
              st->selected.insert(o.key.ns + "/" + o.key.name);
            }
          }
          st->selectedComplete = true;
        }
      }
    }
    kj::HttpHeaders headers(out.table());
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
    auto w = svc_.store.watch(Tr::storeResource(), ns, from);
    if (!w) {
      if (w.error().code != VMHOST_ERR_OUT_OF_RANGE) return storeErrorReply(info, "", w.error());
      // As kube-apiserver: 200, then one ERROR event carrying 410 Expired.
      Json ev{{"type", "ERROR"},
              {"object", statusObject(410, "Expired",
                                      "too old resource version: " + rvParam + " (" +
                                          w.error().message + ")")}};
      auto text = kj::heapString(ev.dump() + "\n");
      out.streaming(200);
      auto stream = out.response().send(200, "OK", headers);
      auto p = stream->write(text.begin(), text.size());
      return p.attach(kj::mv(stream), kj::mv(text));
    }
    st->watch = std::move(w.value());
    auto waker = std::make_shared<Waker>();
    st->waker = waker;
    st->watch->setNotify([waker] { waker->notify(); });
    out.streaming(200);
    st->stream = out.response().send(200, "OK", headers);
    int64_t timeout = svc_.maxWatchTimeout.count();
    if (auto t = parseRevision(req.param("timeoutSeconds")); t && *t > 0 && *t < timeout) {
      timeout = *t;
    }
    WatchState& ref = *st;
    kj::Promise<void> first = kj::READY_NOW;
    if (!initial.empty()) {
      ref.pending = kj::heapString(initial);
      first = ref.stream->write(ref.pending.begin(), ref.pending.size());
    }
    auto disconnected = ref.stream->whenWriteDisconnected();
    return first.then([this, &ref]() { return pump(ref); })
        .exclusiveJoin(svc_.timer.afterDelay(timeout * kj::SECONDS))
        .exclusiveJoin(kj::mv(disconnected))
        .attach(kj::mv(st));
  }

 private:
  struct Selectors {
    api::LabelSelector labels;
    api::FieldSelector fields;
  };

  struct WatchState {
    ~WatchState() {
      // Stop notifications before the waker goes away.
      if (watch) watch->close();
      if (waker) waker->reset();
    }
    api::LabelSelector labels;
    api::FieldSelector fields;
    bool wantTable = false;
    bool sentColumns = false;
    Request request;
    std::unique_ptr<store::Watch> watch;
    std::shared_ptr<Waker> waker;
    kj::Own<kj::AsyncOutputStream> stream;
    kj::String pending;
    // Objects the client currently sees as selected, so an object leaving
    // the selection is reported DELETED and one entering it ADDED, as
    // kube-apiserver does. Complete when the watch began with a listing;
    // otherwise objects selected before the start revision are unknown
    // until they change.
    std::set<std::string> selected;
    bool selectedComplete = false;
    std::set<std::string> deselected;  // seen leaving; known not selected
  };

  std::variant<Selectors, Reply> selectors(const Request& req) {
    auto labels = api::LabelSelector::parse(req.param("labelSelector"));
    if (!labels) return badRequest(labels.error().message);
    auto fields = api::FieldSelector::parse(req.param("fieldSelector"), Tr::fieldLabels());
    if (!fields) return badRequest(fields.error().message);
    return Selectors{std::move(labels.value()), std::move(fields.value())};
  }

  static bool matches(const T& obj, const api::LabelSelector& labels,
                      const api::FieldSelector& fields) {
    if (!labels.matches(obj.metadata.labels)) return false;
    return fields.matches([&](const std::string& f) { return Tr::field(obj, f); });
  }

  Result<T> load(const std::string& ns, const std::string& name) {
    auto o = svc_.store.get(Tr::key(ns, name));
    if (!o) return o.error();
    return Tr::fromStore(*o);
  }

  std::optional<Reply> checkTypeMeta(const Json& body) {
    if (!body.is_object()) return badRequest("the request body must be a JSON or YAML object");
    auto av = body.find("apiVersion");
    if (av != body.end() && !(av->is_string() && *av == info.apiVersion())) {
      return badRequest("the API version in the data (" +
                        (av->is_string() ? av->get<std::string>() : av->dump()) +
                        ") does not match the expected API version (" + info.apiVersion() + ")");
    }
    auto k = body.find("kind");
    if (k != body.end() && !(k->is_string() && *k == info.kind)) {
      return badRequest("the kind in the data (" +
                        (k->is_string() ? k->get<std::string>() : k->dump()) +
                        ") does not match the expected kind (" + info.kind + ")");
    }
    return std::nullopt;
  }

  std::optional<Reply> checkIdentity(const T& obj, const std::string& ns, const std::string& name) {
    if (obj.metadata.name != name) {
      return badRequest("the name of the object (" + obj.metadata.name +
                        ") does not match the name on the URL (" + name + ")");
    }
    if (info.namespaced && !obj.metadata.ns.empty() && obj.metadata.ns != ns) {
      return badRequest(
          "the namespace of the provided object does not match the namespace sent on the "
          "request");
    }
    return std::nullopt;
  }

  static Reply withWarnings(Reply r, const std::vector<std::string>& warnings) {
    r.warnings.insert(r.warnings.end(), warnings.begin(), warnings.end());
    return r;
  }

  // Builds the object to store from the current one and the client's, then
  // validates and writes it with optimistic concurrency on `expectedRv`.
  Reply commit(const Request& req, const T& cur, T in, int64_t expectedRv, bool status,
               bool& conflicted) {
    const std::string& name = cur.metadata.name;
    int64_t curRv = *parseRevision(cur.metadata.resourceVersion);
    if (expectedRv != curRv) {
      conflicted = true;
      return conflict(info, name, kModified);
    }
    T next;
    if (status) {
      // The status subresource changes status only.
      next = cur;
      Tr::takeStatus(next, in);
    } else {
      // The main resource ignores status and the server-owned metadata.
      next = std::move(in);
      Tr::keepFromCurrent(next, cur);
      next.metadata.ns = cur.metadata.ns;
      next.metadata.uid = cur.metadata.uid;
      next.metadata.creationTimestamp = cur.metadata.creationTimestamp;
      next.metadata.deletionTimestamp = cur.metadata.deletionTimestamp;
      next.metadata.generateName = cur.metadata.generateName;
      next.metadata.generation = cur.metadata.generation;
      if (Tr::specOf(next) != Tr::specOf(cur)) next.metadata.generation += 1;
    }
    next.metadata.resourceVersion = cur.metadata.resourceVersion;
    auto errs = Tr::validate(next);
    if (!errs.empty()) return invalidReply(info, name, errs);
    std::string value = Tr::stored(next);
    if (value == Tr::stored(cur)) return jsonReply(200, Tr::view(cur));  // no-op: no new revision
    if (req.dryRun) return jsonReply(200, Tr::view(next));
    auto key = Tr::key(cur.metadata.ns, name);
    if (next.metadata.deletionTimestamp && next.metadata.finalizers.empty()) {
      auto r = svc_.store.remove(key, curRv);
      if (!r) {
        conflicted = r.error().code == VMHOST_ERR_ABORTED;
        return storeErrorReply(info, name, r.error());
      }
      next.metadata.resourceVersion = std::to_string(r->modRevision);
      return jsonReply(200, Tr::view(next));
    }
    auto r = svc_.store.update(key, value, curRv);
    if (!r) {
      conflicted = r.error().code == VMHOST_ERR_ABORTED;
      return storeErrorReply(info, name, r.error());
    }
    next.metadata.resourceVersion = std::to_string(r->modRevision);
    return jsonReply(200, Tr::view(next));
  }

  Json table(const std::vector<T>& items, const std::string& rv, const Request& req,
             bool withColumns) {
    Json t = Json::object();
    t["kind"] = "Table";
    t["apiVersion"] = "meta.k8s.io/v1";
    t["metadata"] = Json{{"resourceVersion", rv}};
    t["columnDefinitions"] = withColumns ? Tr::columns() : Json::array();
    Json rows = Json::array();
    std::string include = req.param("includeObject");
    for (const auto& it : items) {
      Json row = Json{{"cells", Tr::cells(it)}};
      if (include == "Object") {
        row["object"] = Tr::view(it);
      } else if (include != "None") {
        Json meta = Tr::view(it)["metadata"];
        row["object"] = Json{{"kind", "PartialObjectMetadata"},
                             {"apiVersion", "meta.k8s.io/v1"},
                             {"metadata", std::move(meta)}};
      }
      rows.push_back(std::move(row));
    }
    t["rows"] = std::move(rows);
    return t;
  }

  std::string eventLine(WatchState& st, const char* type, const T& obj) {
    Json object;
    if (st.wantTable) {
      object = table({obj}, obj.metadata.resourceVersion, st.request, true);
      st.sentColumns = true;
    } else {
      object = Tr::view(obj);
    }
    return Json{{"type", type}, {"object", std::move(object)}}.dump() + "\n";
  }

  // Writes what the store watch has, then waits for more; bounded batches
  // keep one busy watch from starving the loop.
  kj::Promise<void> pump(WatchState& st) {
    std::string batch;
    bool ended = false;
    size_t taken = 0;
    for (; taken < 512; ++taken) {
      auto ev = st.watch->tryNext();
      if (!ev) break;
      if (ev->type == store::WatchEventType::kError) {
        // A slow or closed watch: end the stream; the client watches again.
        ended = true;
        break;
      }
      auto obj = Tr::fromStore(*ev->object);
      if (!obj) continue;
      std::string key = ev->object->key.ns + "/" + ev->object->key.name;
      bool now = matches(*obj, st.labels, st.fields);
      bool before = st.selected.count(key) > 0;
      const char* type = nullptr;
      // Without a complete starting set, a MODIFIED object not seen before
      // may have been selected all along: report it MODIFIED, unless it was
      // seen leaving. (One that leaves unseen is not reported: it may never
      // have been selected.)
      bool unknown = !st.selectedComplete && !st.deselected.count(key);
      if (ev->type == store::WatchEventType::kDeleted) {
        if (before || (unknown && now)) type = "DELETED";
        st.selected.erase(key);
        st.deselected.erase(key);
      } else if (now) {
        bool known = before || (unknown && ev->type == store::WatchEventType::kModified);
        type = known ? "MODIFIED" : "ADDED";
        st.selected.insert(key);
        st.deselected.erase(key);
      } else if (before) {
        type = "DELETED";  // it left the selection
        st.selected.erase(key);
        st.deselected.insert(key);
      } else if (!st.selectedComplete) {
        st.deselected.insert(key);
      }
      if (type) batch += eventLine(st, type, *obj);
    }
    kj::Promise<void> written = kj::READY_NOW;
    if (!batch.empty()) {
      st.pending = kj::heapString(batch);
      written = st.stream->write(st.pending.begin(), st.pending.size());
    }
    bool more = taken == 512;
    return written.then([this, &st, ended, more]() -> kj::Promise<void> {
      if (ended || st.watch->finished()) return kj::READY_NOW;
      if (more) return kj::evalLater([this, &st]() { return pump(st); });
      return st.waker->wait().then([this, &st]() { return pump(st); });
    });
  }

  Services svc_;
};
}  // namespace vmhost::apiserver
