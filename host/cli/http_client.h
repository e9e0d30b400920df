// A small blocking HTTP client over libcurl for vmctl.
#pragma once

#include "common/result.h"

#include <string>
#include <vector>

namespace vmhost::cli {

struct HttpResponse {
  long status = 0;
  std::string contentType;
  std::string body;
};

class HttpClient {
 public:
  // `server`: base URL, e.g. http://127.0.0.1:8080. `token`: bearer token or "".
  HttpClient(std::string server, std::string token, long timeoutSeconds = 30);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Returns the response for any HTTP status; an Error only when no
  // response arrived (connection refused, timeout, TLS failure).
  Result<HttpResponse> request(const std::string& method, const std::string& path,
                               const std::string& body = "",
                               const std::string& contentType = "application/json");

  const std::string& server() const { return server_; }
  // https: trust the CA in this PEM file instead of the system's store.
  void setCaFile(std::string path) { caFile_ = std::move(path); }

 private:
  std::string server_;
  std::string token_;
  long timeout_;
  std::string caFile_;
  void* curl_;  // CURL*, owned
};

}  // namespace vmhost::cli
