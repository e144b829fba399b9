// Legacy API bridge (see legacy_bridge.h).
//
// libcurl's multi interface driven by Asio: curl says which sockets it wants watched
// (CURLMOPT_SOCKETFUNCTION) and when to call it back (CURLMOPT_TIMERFUNCTION); Asio watches
// each socket through a non-owning stream_descriptor and runs curl_multi_socket_action when one
// is ready or the timer expires. The multi handle keeps the connection cache, so consecutive
// requests to the API reuse their connections.
//
// Sockets are opened and closed through our own callbacks, so that a descriptor is released
// before curl's fd is closed and a stale registration under a reused fd number is dropped when
// the number comes back (curl's resolver closes its own wake-up fds without telling us).
//
// At most connections_max transfers run at once; more calls wait in a FIFO queue, and every
// call keeps its own deadline (timeout_ms from call()), queueing included.
#include "node/legacy_bridge.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/legacy_json.h"
#include "net/log.h"
#include "node/metrics.h"

namespace kv {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Calls waiting for a free transfer slot, beyond which a call fails at once (the core's miss
// coalescing and breaker keep this far lower in practice).
constexpr std::size_t waiting_calls_max = 100000;
// What this file's log lines start with (net/log.h).
constexpr std::string_view log_source = "legacy API";

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Call {
  std::uint64_t id = 0;
  std::string key;
  Bridge::Done done;
  Clock::time_point started, deadline;
  std::string url;
  std::string body;
  std::size_t body_bytes_max = 0;
  bool too_large = false;
  char curl_error[CURL_ERROR_SIZE] = {};
};
using CallPtr = std::unique_ptr<Call>;

// Keeps the body, or stops the transfer once it grows past body_bytes_max.
std::size_t on_body(char* data, std::size_t size, std::size_t n, void* userp) {
  auto* call = static_cast<Call*>(userp);
  const std::size_t bytes = size * n;
  if (call->body.size() + bytes > call->body_bytes_max) {
    call->too_large = true;
    return 0;  // curl aborts with CURLE_WRITE_ERROR
  }
  call->body.append(data, bytes);
  return bytes;
}

class LegacyBridge final : public Bridge {
 public:
  LegacyBridge(asio::io_context& io, const LegacyOptions& options)
      : io_(io), options_(options), curl_timer_(io), deadline_timer_(io) {
    global_init();
    if (options_.connections_max == 0) options_.connections_max = 1;
    if (auto valid = validate_legacy_url_template(options_.url_template); !valid) {
      config_error_ = valid.error().detail;
    }
    multi_ = curl_multi_init();
    if (!multi_) {
      config_error_ = "cannot create a curl multi handle";
      return;
    }
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &LegacyBridge::socket_callback);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &LegacyBridge::timer_callback);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(options_.connections_max));
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(options_.connections_max));
  }

  ~LegacyBridge() override { shut_down(); }

  void start() override {
    if (!config_error_.empty()) log_line(log_source, "not starting: " + config_error_);
  }

  void call(const BridgeCall& bc, Done done) override {
    auto c = std::make_unique<Call>();
    c->id = bc.id;
    c->key = bc.key;
    c->done = std::move(done);
    c->started = Clock::now();
    c->deadline = c->started + std::chrono::milliseconds(options_.timeout_ms);
    c->body_bytes_max = options_.body_bytes_max;
    if (stopped_) return fail(std::move(c), "legacy API: stopped");
    if (!config_error_.empty()) return fail(std::move(c), "legacy API: " + config_error_);
    if (bc.kind != BridgeKind::legacy_fetch) return fail(std::move(c), "legacy API: not a legacy_fetch call");
    if (queue_.size() >= waiting_calls_max) {
      return fail(std::move(c), "legacy API: too many calls waiting (" + std::to_string(waiting_calls_max) + ")");
    }
    c->url = legacy_url_for(options_.url_template, c->key);
    queue_.push_back(std::move(c));
    start_waiting();
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    while (!queue_.empty()) {
      fail(std::move(queue_.front()), "legacy API: stopped");
      queue_.pop_front();
    }
    for (auto& [easy, call] : active_) {
      curl_multi_remove_handle(multi_, easy);
      curl_easy_cleanup(easy);
      fail(std::move(call), "legacy API: stopped");
    }
    active_.clear();
    shut_down();
  }

  void write_metrics(std::string& out) const override {
    metric_header(out, "kv_legacy_calls_total", "counter", "legacy API calls answered, by result");
    out += "kv_legacy_calls_total{result=\"value\"} " + std::to_string(values_) + "\n";
    out += "kv_legacy_calls_total{result=\"not_found\"} " + std::to_string(not_found_) + "\n";
    out += "kv_legacy_calls_total{result=\"error\"} " + std::to_string(errors_) + "\n";
    metric_header(out, "kv_legacy_call_duration_seconds", "histogram", "legacy API call latency, queueing included");
    latency_.write(out, "kv_legacy_call_duration_seconds", "");
  }

 private:
  struct Sock {
    std::unique_ptr<asio::posix::stream_descriptor> descriptor;  // non-owning: curl owns the fd
    int want = 0;                                                 // CURL_POLL_IN / OUT / INOUT
    bool reading = false, writing = false;
    std::uint64_t gen = 0;
  };

  // ---- Answers (posted: never inside call(), never inside a curl callback) ----

  void fail(CallPtr c, std::string detail) {
    BridgeReply r;
    r.id = c->id;
    r.kind = BridgeKind::legacy_fetch;
    r.error = make_error_code(Errc::unavailable);
    r.detail = std::move(detail);
    complete(std::move(c), std::move(r));
  }

  void complete(CallPtr c, BridgeReply r) {
    if (r.error) ++errors_;
    else if (r.record) ++values_;
    else ++not_found_;
    latency_.observe(std::chrono::duration<double>(Clock::now() - c->started).count());
    answers_.add(std::move(c->done), std::move(r));
  }

  // ---- Transfers ----

  void start_waiting() {
    const auto now = Clock::now();
    while (!stopped_ && !queue_.empty() && active_.size() < options_.connections_max) {
      CallPtr c = std::move(queue_.front());
      queue_.pop_front();
      if (c->deadline <= now) {
        fail(std::move(c), "legacy API: timed out after " + std::to_string(options_.timeout_ms) +
                               " ms waiting for a free connection");
        continue;
      }
      start_transfer(std::move(c), now);
    }
    arm_deadline();
  }

  void start_transfer(CallPtr c, Clock::time_point now) {
    CURL* easy = nullptr;
    if (!idle_easy_.empty()) {
      easy = idle_easy_.back();
      idle_easy_.pop_back();
    } else if (!(easy = new_easy())) {
      return fail(std::move(c), "legacy API: cannot create a curl handle");
    }
    // The remaining time, so that a call that queued still ends at its own deadline.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c->deadline - now).count();
    const long timeout_ms = std::max<long>(1, static_cast<long>(left));
    c->curl_error[0] = '\0';
    curl_easy_setopt(easy, CURLOPT_URL, c->url.c_str());
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, c.get());
    curl_easy_setopt(easy, CURLOPT_PRIVATE, c.get());
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, c->curl_error);
    if (const CURLMcode mc = curl_multi_add_handle(multi_, easy); mc != CURLM_OK) {
      curl_easy_cleanup(easy);
      return fail(std::move(c), std::string("legacy API: ") + curl_multi_strerror(mc));
    }
    active_.emplace(easy, std::move(c));
  }

  CURL* new_easy() {
    CURL* easy = curl_easy_init();
    if (!easy) return nullptr;
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.body_bytes_max));
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers());
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &LegacyBridge::open_callback);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, this);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &LegacyBridge::close_callback);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
    return easy;
  }

  curl_slist* headers() {
    if (!headers_) headers_ = curl_slist_append(nullptr, "Accept: application/json");
    return headers_;
  }

  // Answers every finished transfer.
  void check_done() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode res = msg->data.result;  // msg is invalid once the handle is removed
      curl_multi_remove_handle(multi_, easy);
      auto it = active_.find(easy);
      if (it == active_.end()) {
        curl_easy_cleanup(easy);
        continue;
      }
      CallPtr c = std::move(it->second);
      active_.erase(it);
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
      idle_easy_.push_back(easy);
      answer(std::move(c), res, status);
    }
    start_waiting();
  }

  void answer(CallPtr c, CURLcode res, long status) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c->started).count();
    if (c->too_large || res == CURLE_FILESIZE_EXCEEDED) {
      return fail(std::move(c), "legacy API: response body over body_bytes_max (" +
                                    std::to_string(options_.body_bytes_max) + " bytes)");
    }
    if (res != CURLE_OK) {
      std::string detail = std::string("legacy API: ") + curl_easy_strerror(res) + " after " + std::to_string(ms) + " ms";
      if (c->curl_error[0] != '\0') detail += " (" + std::string(c->curl_error) + ")";
      return fail(std::move(c), std::move(detail));
    }
    auto answer = parse_legacy_answer(status, c->body, options_.field, options_.body_bytes_max);
    if (!answer) return fail(std::move(c), "legacy API: " + answer.error().detail);
    BridgeReply r;
    r.id = c->id;
    r.kind = BridgeKind::legacy_fetch;
    if (answer.value()) r.record = Record{Version{}, false, std::move(*answer.value())};
    complete(std::move(c), std::move(r));
  }

  // ---- Sockets ----

  static int socket_callback(CURL*, curl_socket_t fd, int what, void* self, void*) {
    static_cast<LegacyBridge*>(self)->on_socket(fd, what);
    return 0;
  }

  void on_socket(int fd, int what) {
    if (what == CURL_POLL_REMOVE) return forget(fd);
    Sock& s = socks_[fd];
    if (!s.descriptor) {
      s.descriptor = std::make_unique<asio::posix::stream_descriptor>(io_);
      error_code ec;
      s.descriptor->assign(fd, ec);
      if (ec) {  // curl will time the transfer out
        log_line(log_source, "cannot watch socket " + std::to_string(fd) + ": " + ec.message());
        socks_.erase(fd);
        return;
      }
      s.gen = ++sock_gen_;
    }
    s.want = what;
    arm(fd, s);
  }

  void arm(int fd, Sock& s) {
    if ((s.want & CURL_POLL_IN) && !s.reading) {
      s.reading = true;
      wait(fd, s, asio::posix::descriptor_base::wait_read);
    }
    if ((s.want & CURL_POLL_OUT) && !s.writing) {
      s.writing = true;
      wait(fd, s, asio::posix::descriptor_base::wait_write);
    }
  }

  void wait(int fd, Sock& s, asio::posix::descriptor_base::wait_type type) {
    const bool read = type == asio::posix::descriptor_base::wait_read;
    s.descriptor->async_wait(type, [this, alive = std::weak_ptr<char>(alive_), fd, gen = s.gen, read](
                                       const error_code& ec) {
      if (alive.expired() || ec == asio::error::operation_aborted) return;
      auto it = socks_.find(fd);
      if (it == socks_.end() || it->second.gen != gen) return;
      (read ? it->second.reading : it->second.writing) = false;
      const int action = ec ? CURL_CSELECT_ERR : read ? CURL_CSELECT_IN : CURL_CSELECT_OUT;
      int running = 0;
      curl_multi_socket_action(multi_, fd, action, &running);
      check_done();
      // curl may have dropped the socket or changed what it wants meanwhile.
      it = socks_.find(fd);
      if (it != socks_.end() && it->second.gen == gen) arm(fd, it->second);
    });
  }

  void forget(int fd) {
    auto it = socks_.find(fd);
    if (it == socks_.end()) return;
    if (it->second.descriptor && it->second.descriptor->is_open()) it->second.descriptor->release();
    socks_.erase(it);
  }

  static curl_socket_t open_callback(void* self, curlsocktype, curl_sockaddr* addr) {
    const int fd = ::socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    // A registration left under this number belongs to a socket curl closed on its own.
    if (fd >= 0) static_cast<LegacyBridge*>(self)->forget(fd);
    return fd >= 0 ? fd : CURL_SOCKET_BAD;
  }

  static int close_callback(void* self, curl_socket_t fd) {
    static_cast<LegacyBridge*>(self)->forget(fd);  // before the number can be reused
    return ::close(fd);
  }

  // ---- Timers ----

  static int timer_callback(CURLM*, long timeout_ms, void* self) {
    static_cast<LegacyBridge*>(self)->on_curl_timer(timeout_ms);
    return 0;
  }

  // curl may not be re-entered from its own callback: even a zero timeout goes through Asio.
  void on_curl_timer(long timeout_ms) {
    if (timeout_ms < 0) {
      curl_timer_.cancel();
      return;
    }
    curl_timer_.expires_after(std::chrono::milliseconds(timeout_ms));
    curl_timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](const error_code& ec) {
      if (ec || alive.expired() || !multi_) return;
      int running = 0;
      curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      check_done();
    });
  }

  // Waiting calls expire at their deadline (the FIFO's front expires first).
  void arm_deadline() {
    if (queue_.empty() || stopped_) return;
    const auto at = queue_.front()->deadline;
    if (deadline_armed_ && *deadline_armed_ <= at) return;
    deadline_armed_ = at;
    deadline_timer_.expires_at(at);
    deadline_timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](const error_code& ec) {
      if (ec || alive.expired()) return;
      deadline_armed_.reset();
      start_waiting();  // fails the expired ones at the front
      const auto now = Clock::now();
      while (!queue_.empty() && queue_.front()->deadline <= now) {
        fail(std::move(queue_.front()), "legacy API: timed out after " + std::to_string(options_.timeout_ms) +
                                            " ms waiting for a free connection");
        queue_.pop_front();
      }
      arm_deadline();
    });
  }

  void shut_down() {
    curl_timer_.cancel();
    deadline_timer_.cancel();
    if (multi_) {
      for (auto& [easy, call] : active_) {
        curl_multi_remove_handle(multi_, easy);
        curl_easy_cleanup(easy);
      }
      active_.clear();
      for (CURL* easy : idle_easy_) curl_easy_cleanup(easy);
      idle_easy_.clear();
      curl_multi_cleanup(multi_);  // closes cached connections through close_callback
      multi_ = nullptr;
    }
    for (auto& [fd, s] : socks_) {
      if (s.descriptor && s.descriptor->is_open()) s.descriptor->release();
    }
    socks_.clear();
    if (headers_) curl_slist_free_all(headers_);
    headers_ = nullptr;
  }

  asio::io_context& io_;
  LegacyOptions options_;
  std::string config_error_;
  CURLM* multi_ = nullptr;
  curl_slist* headers_ = nullptr;
  asio::steady_timer curl_timer_, deadline_timer_;
  std::optional<Clock::time_point> deadline_armed_;
  std::unordered_map<int, Sock> socks_;
  std::uint64_t sock_gen_ = 0;
  std::unordered_map<CURL*, CallPtr> active_;
  std::vector<CURL*> idle_easy_;
  std::deque<CallPtr> queue_;
  BridgeAnswers answers_{io_};
  bool stopped_ = false;
  std::uint64_t values_ = 0, not_found_ = 0, errors_ = 0;
  Histogram latency_;
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace

std::unique_ptr<Bridge> make_legacy_bridge(asio::io_context& io, const LegacyOptions& options) {
  return std::make_unique<LegacyBridge>(io, options);
}

Expected<void> validate_legacy_url_template(const std::string& url_template) {
  if (url_template.rfind("http://", 0) != 0 && url_template.rfind("https://", 0) != 0) {
    return invalid_input("the URL template must start with http:// or https:// (got '" +
                         url_template + "')");
  }
  if (url_template.find("{key}") == std::string::npos) {
    return invalid_input("the URL template must contain {key}, where the key goes (got '" +
                         url_template + "')");
  }
  for (unsigned char ch : url_template) {
    if (ch <= 0x20 || ch >= 0x7f) {
      return invalid_input("the URL template holds a space, control or non-ASCII byte");
    }
  }
  const std::size_t authority = url_template.find("://") + 3;
  const std::size_t path = std::min(url_template.find_first_of("/?#", authority), url_template.size());
  if (path == authority) return invalid_input("the URL template names no host");
  if (url_template.substr(authority, path - authority).find("{key}") != std::string::npos) {
    return invalid_input("{key} must be in the URL template's path or query, not in its host");
  }
  // libcurl makes the requests, so its URL parser is the one that must accept the template.
  global_init();
  CURLU* u = curl_url();
  if (!u) return invalid_input("cannot parse the URL template: out of memory");
  const CURLUcode rc = curl_url_set(u, CURLUPART_URL, legacy_url_for(url_template, "k").c_str(), 0);
  char* host = nullptr;
  const bool has_host = rc == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
  if (host) curl_free(host);
  curl_url_cleanup(u);
  if (rc != CURLUE_OK) {
    return invalid_input(std::string("the URL template is not a valid URL: ") + curl_url_strerror(rc));
  }
  if (!has_host) return invalid_input("the URL template names no host");
  return outcome::success();
}

std::string legacy_url_for(const std::string& url_template, std::string_view key) {
  // Upper-case hex digits, no '+' for a space: RFC 3986's own form, which any server decodes.
  const std::string encoded = boost::urls::encode(key, boost::urls::unreserved_chars);
  std::string out;
  std::size_t pos = 0;
  for (std::size_t at; (at = url_template.find("{key}", pos)) != std::string::npos; pos = at + 5) {
    out.append(url_template, pos, at - pos);
    out += encoded;
  }
  out.append(url_template, pos, std::string::npos);
  return out;
}

}  // namespace kv
