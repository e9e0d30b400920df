// GET .../virtualmachines/<name>/console: the guest's serial console as a
// WebSocket, raw bytes in binary frames both ways (text frames from the
// client are taken as bytes too). The ConsoleProvider (the node side) owns
// the serial port; its thread hands output to the server's loop.
#pragma once

#include "api/console.h"
#include "apiserver/http.h"
#include "apiserver/resource.h"
#include "store/store.h"

namespace vmhost::apiserver {

// `consoles` may be null (503: this server serves no consoles).
kj::Promise<void> serveConsole(const Route& route, const Request& req, Responder& out,
                               store::Store& store, api::ConsoleProvider* consoles);

}  // namespace vmhost::apiserver
