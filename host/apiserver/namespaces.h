// /api/v1/namespaces[/<name>]: namespaces are implicit ("default" and every
// namespace holding a VM), served read-only so `kubectl get namespaces`
// and kubectl's namespace checks work.
#pragma once

#include "apiserver/http.h"
#include "store/store.h"

#include <string>

namespace vmhost::apiserver {

// `name` empty: the list.
Reply serveNamespaces(store::Store& store, const Request& req, const std::string& name);

}  // namespace vmhost::apiserver
