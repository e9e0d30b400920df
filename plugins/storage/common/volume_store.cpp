// The qcow2 volume store: see volume_store.h for the layout, the choice of
// qemu-img over libvirt's storage-pool API, and the error codes.
#include "volume_store.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace vmhost::storage {
namespace {

namespace fs = std::filesystem;
using sdk::Error;

constexpr int kQemuImgTimeoutSeconds = 600;  // convert of a large image can take minutes
constexpr long kConnectTimeoutSeconds = 10;
constexpr long kStallSeconds = 30;  // a fetch moving < 1 byte/s this long fails

// "vda", ..., "vdz", "vdaa", ... as libvirt names them.
std::string targetDev(schema::DiskBus bus, uint32_t index) {
  std::string suffix;
  uint64_t i = index;
  do {
    suffix.insert(suffix.begin(), static_cast<char>('a' + i % 26));
    i = i / 26;
  } while (i-- > 0);
  return (bus == schema::DiskBus::VIRTIO ? "vd" : "sd") + suffix;
}

void checkName(const char* field, const std::string& value) {
  static const std::regex kName("[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?");
  if (!std::regex_match(value, kName)) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                std::string(field) + ": '" + value + "' is not a valid name (DNS-1123 subdomain)");
  }
}

vmhost_status codeOf(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return VMHOST_ERR_PERMISSION_DENIED;
    case ENOSPC:
    case EDQUOT:
      return VMHOST_ERR_RESOURCE_EXHAUSTED;
    case ENOENT:
    case ENOTDIR:
      return VMHOST_ERR_NOT_FOUND;
    default:
      return VMHOST_ERR_INTERNAL;
  }
}

[[noreturn]] void throwErrno(const std::string& what, int err) {
  throw Error(codeOf(err), what + ": " + std::strerror(err), err == ENOSPC || err == EAGAIN);
}

// qemu-img's stderr says the cause in words; map the usual ones to codes.
vmhost_status codeOfMessage(const std::string& text) {
  if (text.find("No space left") != std::string::npos || text.find("quota") != std::string::npos) {
    return VMHOST_ERR_RESOURCE_EXHAUSTED;
  }
  if (text.find("Permission denied") != std::string::npos ||
      text.find("Read-only file system") != std::string::npos) {
    return VMHOST_ERR_PERMISSION_DENIED;
  }
  if (text.find("No such file") != std::string::npos) return VMHOST_ERR_NOT_FOUND;
  return VMHOST_ERR_INTERNAL;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs qemu-img with `args` (no shell). Throws with the volume, the action and
// qemu-img's own message on failure.
void qemuImg(const std::string& volume, const std::string& action, std::vector<std::string> args) {
  args.insert(args.begin(), "qemu-img");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throwErrno("volume " + volume + ": " + action + ": pipe", errno);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, "qemu-img", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    if (rc == ENOENT) {
      throw Error(VMHOST_ERR_FAILED_PRECONDITION,
                  "volume " + volume + ": " + action +
                      ": qemu-img not found in PATH (install the qemu-utils package)");
    }
    throwErrno("volume " + volume + ": " + action + ": starting qemu-img", rc);
  }

  std::string err;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kQemuImgTimeoutSeconds);
  bool timedOut = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      timedOut = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: qemu-img closed stderr (exiting)
    if (err.size() < 8192) err.append(buf, static_cast<size_t>(got));
  }
  ::close(fds[0]);
  int status = 0;
  if (timedOut) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw Error(VMHOST_ERR_DEADLINE_EXCEEDED,
                "volume " + volume + ": " + action + ": qemu-img did not finish within " +
                    std::to_string(kQemuImgTimeoutSeconds) + " s",
                true);
  }
  // stderr is closed: the process is exiting; still bound the wait.
  for (int i = 0;; ++i) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR)
      throwErrno("volume " + volume + ": " + action + ": waitpid", errno);
    if (i == 1000) {  // 10 s after closing stderr
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      throw Error(VMHOST_ERR_DEADLINE_EXCEEDED,
                  "volume " + volume + ": " + action + ": qemu-img did not exit", true);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  err = trim(err);
  auto code = codeOfMessage(err);
  throw Error(code,
              "volume " + volume + ": " + action + ": " +
                  (err.empty() ? "qemu-img failed with status " + std::to_string(status) : err),
              code == VMHOST_ERR_RESOURCE_EXHAUSTED);
}

// "qcow2" when the file starts with the qcow2 magic, else "raw". Throws
// NOT_FOUND etc. naming the volume when the file cannot be read.
std::string probeFormat(const std::string& volume, const std::string& path, uint64_t* virtualSize) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwErrno("volume " + volume + ": base image " + path, errno);
  unsigned char header[32] = {};
  ssize_t n = ::pread(fd, header, sizeof header, 0);
  struct stat st {};
  ::fstat(fd, &st);
  ::close(fd);
  bool qcow2 =
      n >= 32 && header[0] == 'Q' && header[1] == 'F' && header[2] == 'I' && header[3] == 0xfb;
  if (virtualSize != nullptr) {
    if (qcow2) {
      uint64_t size = 0;
      for (int i = 24; i < 32; ++i) size = (size << 8) | header[i];
      *virtualSize = size;
    } else {
      *virtualSize = static_cast<uint64_t>(st.st_size);
    }
  }
  return qcow2 ? "qcow2" : "raw";
}

void makeDirs(const std::string& volume, const fs::path& dir) {
  std::error_code ec;
  // A release of another VM's last volume removes the empty namespace
  // directory (rmdir, below), which may happen between our creating it and
  // creating the VM's directory in it: ENOENT then, and creating again
  // succeeds. Bounded: each retry needs another VM's release to interleave.
  for (int attempt = 0; attempt < 8; ++attempt) {
    ec.clear();
    fs::create_directories(dir, ec);
    if (ec != std::errc::no_such_file_or_directory) break;
  }
  if (ec) throwErrno("volume " + volume + ": creating " + dir.string(), ec.value());
}

std::string tempName(const fs::path& final) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".tmp-%d-%08llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(rng() & 0xffffffffULL));
  return final.string() + suffix;
}

// Publishes `tmp` as `final` unless `final` exists (another prepare, maybe on
// another node, won). Returns whether this call created it.
bool publish(const std::string& volume, const std::string& tmp, const fs::path& final) {
  if (::link(tmp.c_str(), final.c_str()) == 0) {
    ::unlink(tmp.c_str());
    return true;
  }
  int err = errno;
  if (err == EPERM || err == EOPNOTSUPP || err == ENOSYS) {
    // A file system without hard links: the same no-replace publish by rename.
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final.c_str(), RENAME_NOREPLACE) == 0)
      return true;
    err = errno;
  }
  ::unlink(tmp.c_str());
  if (err == EEXIST) return false;
  throwErrno("volume " + volume + ": creating " + final.string(), err);
}

// Creates `file` with qemu-img (args get the temp path appended, then
// `tail`) unless it exists. Returns whether this call created it.
bool createOnce(const std::string& volume, const fs::path& file, const std::string& action,
                std::vector<std::string> args, const std::vector<std::string>& tail) {
  if (::access(file.c_str(), F_OK) == 0) return false;
  makeDirs(volume, file.parent_path());
  std::string tmp = tempName(file);
  args.push_back(tmp);
  args.insert(args.end(), tail.begin(), tail.end());
  try {
    qemuImg(volume, action, args);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return publish(volume, tmp, file);
}

// Publishes a copy of the overlay template `from` as `file` (unless it
// exists). A fresh qcow2 overlay holds nothing but its header, an empty L1
// table and refcounts, and nothing in it is unique to an image, so copying
// one is creating one: ~0.2 MB of copy instead of a qemu-img process
// (10-30 ms, more on a busy node) on every VM start.
bool copyOverlay(const std::string& volume, const fs::path& from, const fs::path& file) {
  if (::access(file.c_str(), F_OK) == 0) return false;
  makeDirs(volume, file.parent_path());
  std::string tmp = tempName(file);
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0)
    throwErrno("volume " + volume + ": reading the overlay template " + from.string(), errno);
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    int err = errno;
    ::close(in);
    throwErrno("volume " + volume + ": creating " + tmp, err);
  }
  struct stat st {};
  ::fstat(in, &st);
  off_t left = st.st_size;
  int err = 0;
  for (int guard = 0; left > 0 && guard < 1'000'000; ++guard) {
    ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, static_cast<size_t>(left), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    left -= n;
  }
  ::close(in);
  if (::close(out) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    throwErrno("volume " + volume + ": copying the overlay template to " + tmp, err);
  }
  return publish(volume, tmp, file);
}

// Grows a qcow2 volume to `size` when it is smaller (never shrinks).
void growTo(const std::string& volume, const fs::path& file, uint64_t size) {
  uint64_t current = 0;
  probeFormat(volume, file.string(), &current);
  if (size > current) {
    qemuImg(volume, "resizing " + file.string() + " to " + std::to_string(size) + " bytes",
            {"resize", "-f", "qcow2", file.string(), std::to_string(size)});
  }
}

std::string hex(const unsigned char* bytes, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 15]);
  }
  return out;
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      EVP_MD_CTX_free(ctx_);
      throw Error(VMHOST_ERR_INTERNAL, "sha256: OpenSSL EVP initialisation failed");
    }
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  std::string hexDigest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    return hex(md, len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256Of(const std::string& text) {
  Sha256 h;
  h.update(text.data(), text.size());
  return h.hexDigest();
}

struct Download {
  int fd = -1;
  Sha256* hash = nullptr;
  int writeErrno = 0;
};

struct FetchProgress {
  const VolumeStore::Progress* report;  // nullptr: nobody listens
  std::string vmUid;
  std::string what;
  std::chrono::steady_clock::time_point last{};
};

// curl's transfer callback: at most every 200 ms, and never aborts.
int onProgress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* p = static_cast<FetchProgress*>(user);
  auto now = std::chrono::steady_clock::now();
  if (dlnow > 0 && now - p->last >= std::chrono::milliseconds(200)) {
    p->last = now;
    (*p->report)(p->vmUid, p->what, static_cast<uint64_t>(dlnow),
                 static_cast<uint64_t>(std::max<curl_off_t>(0, dltotal)));
  }
  return 0;
}

size_t onData(char* data, size_t size, size_t count, void* user) {
  auto* d = static_cast<Download*>(user);
  size_t total = size * count;
  size_t done = 0;
  while (done < total) {
    ssize_t n = ::write(d->fd, data + done, total - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      d->writeErrno = errno;
      return 0;  // aborts the transfer
    }
    done += static_cast<size_t>(n);
  }
  d->hash->update(data, total);
  return total;
}

std::once_flag curlInit;

// What the checksum memo is keyed by: the file as it is now (a replaced
// base image is checked again) and the checksum asked for.
std::string memoKey(const std::string& path, const std::string& sha256) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return path + "\n" + std::to_string(st.st_size) + "\n" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + "\n" + sha256;
}

}  // namespace

// The overlay template of `base`: made once with qemu-img under
// images/overlays/, named after the base as it is now (path, size, mtime),
// so a replaced base gets a new template.
fs::path VolumeStore::overlayTemplate(const std::string& volume, const Base& base) {
  fs::path file = fs::path(root_) / "images" / "overlays" /
                  (sha256Of(memoKey(base.path, base.format)) + ".qcow2");
  createOnce(volume, file, "creating an overlay on " + base.path,
             {"create", "-q", "-f", "qcow2", "-F", base.format, "-b", base.path}, {});
  return file;
}

VolumeStore::VolumeStore(std::string root, bool shared, Progress progress)
    : root_(std::move(root)), shared_(shared), progress_(std::move(progress)) {}

VolumeStore::Base VolumeStore::resolveImage(const std::string& volume, schema::Image::Reader image,
                                            const std::string& vmUid) {
  std::string path = image.getPath().cStr(), url = image.getUrl().cStr();
  std::string sha = image.getSha256().cStr();
  if (!sha.empty() && !std::regex_match(sha, std::regex("[0-9a-f]{64}"))) {
    throw Error(
        VMHOST_ERR_INVALID_ARGUMENT,
        "volume " + volume + ": image.sha256 must be 64 lower-case hex digits, got '" + sha + "'");
  }
  if (!path.empty() && !url.empty()) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                "volume " + volume + ": image has both path and url; give one");
  }
  if (path.empty() && url.empty()) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume " + volume + ": image needs a path or a url");
  }
  if (!path.empty()) {
    if (path[0] != '/') {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "volume " + volume + ": image.path must be absolute, got '" + path + "'");
    }
  } else {
    path = fetch(volume, url, sha, vmUid);
  }
  if (!sha.empty()) verify(volume, path, sha);
  return {path, probeFormat(volume, path, nullptr)};
}

std::string VolumeStore::fetch(const std::string& volume, const std::string& url,
                               const std::string& sha256, const std::string& vmUid) {
  if (url.rfind("file://", 0) != 0 && url.rfind("http://", 0) != 0 &&
      url.rfind("https://", 0) != 0) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                "volume " + volume + ": image.url '" + url +
                    "': only file://, http:// and https:// are supported");
  }
  fs::path dir = fs::path(root_) / "images";
  fs::path file = dir / sha256Of(url);
  if (::access(file.c_str(), F_OK) == 0)
    return file.string();  // fetched once per node (or per share)
  makeDirs(volume, dir);

  std::call_once(curlInit, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::string tmp = tempName(file);
  Download d;
  d.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (d.fd < 0) throwErrno("volume " + volume + ": creating " + tmp, errno);
  Sha256 hash;
  d.hash = &hash;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    ::close(d.fd);
    ::unlink(tmp.c_str());
    throw Error(VMHOST_ERR_INTERNAL, "volume " + volume + ": curl_easy_init failed");
  }
  char curlErr[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "file,http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, kStallSeconds);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curlErr);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onData);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &d);
  FetchProgress progress{progress_ ? &progress_ : nullptr, vmUid,
                         "volume " + volume + ": fetching " + url};
  if (progress.report != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, onProgress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &progress);
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK && progress.report != nullptr) {
    curl_off_t got = 0;
    curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &got);
    (*progress.report)(vmUid, progress.what, static_cast<uint64_t>(got),
                       static_cast<uint64_t>(got));
  }
  long httpCode = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &httpCode);
  curl_easy_cleanup(curl);
  int syncErr = rc == CURLE_OK && ::fsync(d.fd) != 0 ? errno : 0;
  ::close(d.fd);
  if (rc != CURLE_OK || syncErr != 0) {
    ::unlink(tmp.c_str());
    std::string what = "volume " + volume + ": fetching base image " + url;
    if (d.writeErrno != 0) throwErrno(what + ": writing " + tmp, d.writeErrno);
    if (syncErr != 0) throwErrno(what + ": writing " + tmp, syncErr);
    std::string cause = curlErr[0] != '\0' ? curlErr : curl_easy_strerror(rc);
    if (rc == CURLE_FILE_COULDNT_READ_FILE ||
        (rc == CURLE_HTTP_RETURNED_ERROR && (httpCode == 404 || httpCode == 410))) {
      throw Error(VMHOST_ERR_NOT_FOUND, what + ": base image missing: " + cause);
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR && httpCode >= 400 && httpCode < 500 && httpCode != 408 &&
        httpCode != 429) {
      throw Error(httpCode == 401 || httpCode == 403 ? VMHOST_ERR_PERMISSION_DENIED
                                                     : VMHOST_ERR_FAILED_PRECONDITION,
                  what + ": " + cause);
    }
    if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, what + ": " + cause);
    }
    throw Error(VMHOST_ERR_UNAVAILABLE, what + ": unreachable: " + cause, true);
  }
  // Checked before publishing, so a bad download never enters the cache;
  // resolveImage's check then hits the memo.
  std::string digest = hash.hexDigest();
  if (!sha256.empty() && digest != sha256) {
    ::unlink(tmp.c_str());
    throw Error(VMHOST_ERR_DATA_LOSS, "volume " + volume + ": checksum mismatch for base image " +
                                          url + ": sha256 is " + digest + ", the spec says " +
                                          sha256);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throwErrno("volume " + volume + ": publishing base image " + file.string(), err);
  }
  std::string key = memoKey(file.string(), digest);
  if (!key.empty()) {
    std::lock_guard lock(mutex_);
    verified_.insert(key);
  }
  return file.string();
}

void VolumeStore::verify(const std::string& volume, const std::string& path,
                         const std::string& sha256) {
  std::string key = memoKey(path, sha256);
  if (!key.empty()) {
    std::lock_guard lock(mutex_);
    if (verified_.count(key) != 0) return;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwErrno("volume " + volume + ": base image " + path, errno);
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throwErrno("volume " + volume + ": reading base image " + path, err);
    }
    if (n == 0) break;
    hash.update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  std::string digest = hash.hexDigest();
  if (digest != sha256) {
    throw Error(VMHOST_ERR_DATA_LOSS, "volume " + volume + ": checksum mismatch for base image " +
                                          path + ": sha256 is " + digest + ", the spec says " +
                                          sha256);
  }
  if (!key.empty()) {
    std::lock_guard lock(mutex_);
    verified_.insert(key);
  }
}

void VolumeStore::prepare(schema::VolumeRequest::Reader request,
                          schema::VolumeAttachment::Builder out) {
  auto vm = request.getVm();
  auto volume = request.getVolume();
  std::string ns = vm.getNamespace().cStr(), name = vm.getName().cStr();
  std::string uid = vm.getUid().cStr();
  std::string volName = volume.getName().cStr();
  checkName("vm.namespace", ns);
  checkName("vm.name", name);
  checkName("volume.name", volName);
  uint64_t size = volume.getSizeBytes();

  out.setVolumeName(volName);
  out.setTargetDev(targetDev(volume.getBus(), volume.getDiskIndex()));
  out.setBus(volume.getBus());
  out.setReadOnly(volume.getReadOnly());
  out.setBootOrder(volume.getBootOrder());
  out.setShared(shared_);
  out.setDiskType("file");
  out.setFormat("qcow2");

  fs::path vmDir = fs::path(root_) / "vms" / ns / name;
  auto source = volume.getSource();
  switch (source.which()) {
    case schema::Volume::Source::EMPTY: {
      if (size == 0) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                    "volume " + volName + ": an empty disk needs sizeBytes");
      }
      fs::path file = vmDir / (volName + ".qcow2");
      bool created = createOnce(volName, file, "creating " + file.string(),
                                {"create", "-q", "-f", "qcow2"}, {std::to_string(size)});
      if (!created) growTo(volName, file, size);
      out.setSourcePath(file.string());
      out.setCreated(created);
      return;
    }
    case schema::Volume::Source::EPHEMERAL: {
      fs::path file = vmDir / (volName + ".ephemeral.qcow2");
      bool created = false;
      if (::access(file.c_str(), F_OK) != 0) {
        Base base = resolveImage(volName, source.getEphemeral(), uid);
        std::vector<std::string> tail;
        uint64_t baseSize = 0;
        probeFormat(volName, base.path, &baseSize);
        if (size > baseSize) {
          created = createOnce(volName, file, "creating an overlay on " + base.path,
                               {"create", "-q", "-f", "qcow2", "-F", base.format, "-b", base.path},
                               {std::to_string(size)});
        } else {
          created = copyOverlay(volName, overlayTemplate(volName, base), file);
        }
      }
      if (!created) growTo(volName, file, size);
      out.setSourcePath(file.string());
      out.setCreated(created);
      return;
    }
    case schema::Volume::Source::PERSISTENT: {
      auto persistent = source.getPersistent();
      std::string claim = persistent.getClaimName().cStr();
      if (claim.empty()) claim = name + "-" + volName;
      checkName("persistent.claimName", claim);
      fs::path file = fs::path(root_) / "persistent" / ns / (claim + ".qcow2");
      bool created = false;
      if (::access(file.c_str(), F_OK) != 0) {
        if (persistent.hasImage() && (persistent.getImage().getPath().size() > 0 ||
                                      persistent.getImage().getUrl().size() > 0)) {
          // A copy, not an overlay: a disk that outlives the VM must not
          // depend on a base file that can be replaced or cleaned up.
          Base base = resolveImage(volName, persistent.getImage(), uid);
          created = createOnce(volName, file, "copying " + base.path,
                               {"convert", "-q", "-f", base.format, "-O", "qcow2", base.path}, {});
        } else {
          if (size == 0) {
            throw Error(
                VMHOST_ERR_INVALID_ARGUMENT,
                "volume " + volName + ": a persistent disk without an image needs sizeBytes");
          }
          created = createOnce(volName, file, "creating " + file.string(),
                               {"create", "-q", "-f", "qcow2"}, {std::to_string(size)});
        }
      }
      growTo(volName, file, size);
      out.setSourcePath(file.string());
      out.setCreated(created);
      return;
    }
    case schema::Volume::Source::HOST_PATH: {
      std::string path = source.getHostPath().cStr();
      if (path.empty() || path[0] != '/') {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                    "volume " + volName + ": hostPath must be absolute");
      }
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) throwErrno("volume " + volName + ": " + path, errno);
      out.setDiskType(S_ISBLK(st.st_mode) ? "block" : "file");
      out.setSourcePath(path);
      out.setFormat("raw");
      out.setCreated(false);
      return;
    }
  }
  throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume " + volName + ": unknown source type");
}

void VolumeStore::release(schema::VolumeRelease::Reader request,
                          schema::VolumeReleased::Builder out) {
  auto vm = request.getVm();
  auto volume = request.getVolume();
  std::string ns = vm.getNamespace().cStr(), name = vm.getName().cStr();
  std::string volName = volume.getName().cStr();
  checkName("vm.namespace", ns);
  checkName("vm.name", name);
  checkName("volume.name", volName);
  // An unknown reclaim policy keeps the data: deleting is the one thing not undone.
  bool drop = request.getDeleteData() && volume.getReclaimPolicy() == schema::ReclaimPolicy::DELETE;
  fs::path vmDir = fs::path(root_) / "vms" / ns / name;
  fs::path file;
  auto source = volume.getSource();
  switch (source.which()) {
    case schema::Volume::Source::EMPTY:
      file = vmDir / (volName + ".qcow2");
      break;
    case schema::Volume::Source::EPHEMERAL:
      file = vmDir / (volName + ".ephemeral.qcow2");
      drop = true;  // an overlay goes with every release
      break;
    case schema::Volume::Source::PERSISTENT: {
      std::string claim = source.getPersistent().getClaimName().cStr();
      if (claim.empty()) claim = name + "-" + volName;
      checkName("persistent.claimName", claim);
      file = fs::path(root_) / "persistent" / ns / (claim + ".qcow2");
      break;
    }
    case schema::Volume::Source::HOST_PATH:
    default:
      return;  // host paths belong to the operator
  }
  if (!drop) {
    out.setRetained(true);
    return;
  }
  if (::unlink(file.c_str()) == 0) {
    out.setDeleted(true);
  } else if (errno != ENOENT) {
    throwErrno("volume " + volName + ": removing " + file.string(), errno);
  }
  // Drop the now-empty directories (ENOTEMPTY is fine).
  ::rmdir(file.parent_path().c_str());
  if (source.which() != schema::Volume::Source::PERSISTENT) ::rmdir(vmDir.parent_path().c_str());
}

}  // namespace vmhost::storage
