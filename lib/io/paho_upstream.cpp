#include "io/paho_upstream.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "io/publish_window.hpp"

// ---- Workaround for a memory bug in Paho C 1.3.12 (eclipse-paho/paho.mqtt.c#1621) ----------
//
// When Paho writes a QoS 1/2 PUBLISH and the write fails because the broker has just gone
// (EPIPE, ECONNRESET), it frees the message's topic and payload while its list of messages to
// resend still points at them. With a clean session they are then freed twice (glibc aborts the
// bridge); with a persistent session the freed bytes are resent after the reconnect, the broker
// disconnects the bridge for a protocol error, and it does so after every reconnect.
//
// A write that *would block* takes Paho's other path, which keeps the message intact; the
// receive thread then finds the connection closed and Paho reconnects as usual. So these two
// errors, on Paho's own threads only ("MQTTAsync_send", "MQTTAsync_rcv"), are reported to Paho
// as EAGAIN. writev() is Paho's plain TCP write and write() OpenSSL's (ssl:// brokers). The
// definitions below take precedence over libc's for every library in the process; any other
// caller, or any other error, gets exactly what libc returns.
namespace {

std::atomic<std::uint64_t> deferred_write_errors{0};

bool on_paho_thread() {
    char name[16] = {};
    return prctl(PR_GET_NAME, name) == 0 && std::strncmp(name, "MQTTAsync_", 10) == 0;
}

// The next definition after ours: a sanitizer's interceptor if one is loaded, else libc's.
template <typename Function>
Function next_definition(const char* name) {
    return reinterpret_cast<Function>(dlsym(RTLD_NEXT, name));
}

ssize_t paho_safe_result(ssize_t result) {
    if (result < 0 && (errno == EPIPE || errno == ECONNRESET) && on_paho_thread()) {
        deferred_write_errors.fetch_add(1, std::memory_order_relaxed);
        errno = EAGAIN;
    }
    return result;
}

}  // namespace

extern "C" ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
    static const auto real = next_definition<ssize_t (*)(int, const struct iovec*, int)>("writev");
    return paho_safe_result(real(fd, iov, iovcnt));
}

extern "C" ssize_t write(int fd, const void* buffer, size_t count) {
    static const auto real = next_definition<ssize_t (*)(int, const void*, size_t)>("write");
    return paho_safe_result(real(fd, buffer, count));
}

namespace mqttws {
namespace {

// Paho C's own count of the heap it holds: exported by the library (not in its public headers)
// when it is built with heap tracking, as Debian builds it. Looked up at run time, so a Paho
// without it only loses the metric. Read without Paho's heap mutex (the library has no locked
// accessor): one aligned word, for monitoring only.
struct paho_heap_info_t {
    std::size_t current_size;
    std::size_t max_size;
};
using paho_heap_info_fn = paho_heap_info_t* (*)();
const paho_heap_info_fn paho_heap_info =
    reinterpret_cast<paho_heap_info_fn>(dlsym(RTLD_DEFAULT, "Heap_get_info"));

// Operation ids travel through Paho as the token's user context.
void* to_context(op_id op) {
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(op));
}
op_id from_context(void* context) {
    return static_cast<op_id>(reinterpret_cast<std::uintptr_t>(context));
}

// A failed publish, in the bridge's error codes. Reason codes are MQTT v5 PUBACK/PUBREC ones.
upstream_published_event publish_failure(op_id op, int return_code, int reason_code) {
    upstream_published_event e;
    e.op = op;
    switch (reason_code) {
        case 0x87:  // not authorized
            e.error = errc::forbidden;
            e.message = "the broker refused the publish: not authorized";
            return e;
        case 0x90:  // topic name invalid
            e.error = errc::bad_request;
            e.message = "the broker refused the publish: topic name invalid";
            return e;
        case 0x95:  // packet too large
            e.error = errc::too_large;
            e.message = "the broker refused the publish: packet too large";
            return e;
        case 0x97:  // quota exceeded
            e.error = errc::rate_limited;
            e.message = "the broker refused the publish: quota exceeded";
            return e;
        default:
            break;
    }
    if (reason_code >= 0x80) {
        e.error = errc::internal;
        e.message =
            "the broker refused the publish (reason code " + std::to_string(reason_code) + ")";
    } else {
        // No answer from the broker: the connection went away with the publish in flight.
        e.error = errc::unavailable;
        e.message = "the broker connection was lost before it confirmed the publish (rc " +
                    std::to_string(return_code) + ")";
    }
    return e;
}

// Paho C never sets TCP_NODELAY and gives no access to its socket. With Nagle's algorithm on,
// a PUBLISH that follows the bridge's own PUBACK waits for the broker's delayed ACK: ~20-40 ms
// added to QoS 1 round trips (measured by bench/ S4). So, once connected, Nagle is switched off
// on the process's outgoing TCP sockets — Paho's is the only one; accepted WebSocket sockets
// have it already (ws_server).
void disable_nagle_on_outgoing_sockets() {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return;
    while (dirent* entry = readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
        int type = 0, listening = 0;
        socklen_t len = sizeof type;
        if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
            type != SOCK_STREAM)
            continue;
        len = sizeof listening;
        if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
            listening)
            continue;
        const int on = 1;
        setsockopt(static_cast<int>(fd), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
    closedir(dir);
}

mqtt::create_options make_create_options(int mqtt_version) {
    mqtt::create_options o(mqtt_version >= 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    // Paho refuses a publish (-12) once this many commands wait to be written — even while
    // connected, and a QoS 0 one is then lost. Bursts of client publishes (fan-in) hit the
    // default of 100 at once; the bridge's offline queue and flow control bound memory instead.
    o.set_max_buffered_messages(1 << 20);
    return o;
}

class paho_upstream final : public upstream {
  public:
    paho_upstream(asio::io_context& io, upstream_options options, broker_session session,
                  event_sink sink)
        : io_(io),
          options_(std::move(options)),
          session_(session),
          sink_(std::move(sink)),
          client_(options_.broker_uri, options_.client_id,
                  make_create_options(session_.mqtt_version),
                  nullptr),  // nullptr: no file persistence
          subscribed_(*this),
          published_(*this),
          written_listener_(*this),
          connected_(*this),
          window_(options_.max_inflight, options_.max_queued_bytes) {
        client_.set_connected_handler([this](const std::string&) {
            disable_nagle_on_outgoing_sockets();
            push(upstream_connected_event{session_present_.load()});
        });
        client_.set_connection_lost_handler([this](const std::string& cause) {
            std::string reason = cause.empty() ? "connection lost" : cause;
            if (deferred_write_errors.exchange(0) > 0) reason += " (a write to the broker failed)";
            push(upstream_lost_event{std::move(reason)});
        });
        client_.set_message_callback([this](mqtt::const_message_ptr m) {
            broker_message copy;
            copy.topic = m->get_topic();
            copy.payload = m->get_payload_str();
            copy.qos = static_cast<std::uint8_t>(m->get_qos());
            copy.retained = m->is_retained();
            copy.duplicate = m->is_duplicate();
            const auto& props = m->get_properties();
            const std::size_t ids = props.count(mqtt::property::SUBSCRIPTION_IDENTIFIER);
            for (std::size_t i = 0; i < ids; ++i) {
                copy.subscription_ids.push_back(static_cast<std::uint32_t>(
                    mqtt::get<int>(props, mqtt::property::SUBSCRIPTION_IDENTIFIER, i)));
            }
            if (props.contains(mqtt::property::RESPONSE_TOPIC))
                copy.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
            if (props.contains(mqtt::property::CORRELATION_DATA)) {
                copy.correlation_data =
                    mqtt::get<std::string>(props, mqtt::property::CORRELATION_DATA);
            }
            push(std::move(copy));
        });
    }

    ~paho_upstream() override { stop(0); }

    void start() override {
        mqtt::connect_options_builder builder;
        builder.keep_alive_interval(options_.keepalive)
            .connect_timeout(std::chrono::seconds(5))
            .automatic_reconnect(options_.reconnect_min, options_.reconnect_max);
        if (!options_.username.empty()) builder.user_name(options_.username);
        if (!options_.password.empty()) builder.password(options_.password);
        if (session_.mqtt_version >= 5) {
            builder.mqtt_version(MQTTVERSION_5).clean_start(!session_.persistent_session);
            if (session_.persistent_session) {
                builder.properties({{mqtt::property::SESSION_EXPIRY_INTERVAL,
                                     static_cast<int>(options_.session_expiry.count())}});
            }
        } else {
            builder.mqtt_version(MQTTVERSION_3_1_1).clean_session(!session_.persistent_session);
        }
        if (!options_.will_topic.empty()) {
            builder.will(mqtt::message(options_.will_topic, options_.will_payload.data(),
                                       options_.will_payload.size(), 1, true));
        }
        try {
            // Paho's automatic reconnect also retries a broker that is down at start-up.
            client_.connect(builder.finalize(), nullptr, connected_);
        } catch (const mqtt::exception& e) {
            push(upstream_lost_event{std::string("cannot start connecting: ") + e.what()});
        }
    }

    void subscribe(const subscribe_upstream& r) override {
        try {
            if (session_.mqtt_version >= 5) {
                mqtt::subscribe_options opts(
                    r.no_local ? mqtt::subscribe_options::SUBSCRIBE_NO_LOCAL
                               : mqtt::subscribe_options::SUBSCRIBE_LOCAL,
                    mqtt::subscribe_options::RETAIN_AS_PUBLISHED,
                    r.replay_retained ? mqtt::subscribe_options::SEND_RETAINED_ON_SUBSCRIBE
                                      : mqtt::subscribe_options::SEND_RETAINED_ON_NEW);
                mqtt::properties props;
                if (r.subscription_id != 0) {
                    props.add({mqtt::property::SUBSCRIPTION_IDENTIFIER,
                               static_cast<int>(r.subscription_id)});
                }
                client_.subscribe(r.filter, r.qos, to_context(r.op), subscribed_, opts, props);
            } else {
                client_.subscribe(r.filter, r.qos, to_context(r.op), subscribed_);
            }
        } catch (const mqtt::exception&) {
            // Disconnected: the engine subscribes everything again when the connection is back.
            push(upstream_subscribed_event{r.op, -1});
        }
    }

    void unsubscribe(const unsubscribe_upstream& r) override {
        try {
            client_.unsubscribe(r.filter);
        } catch (const mqtt::exception&) {
            // Disconnected: a clean session forgets the subscription anyway.
        }
    }

    // To Paho at once while the window has room; else it waits its turn (publish_window.hpp).
    void publish(publish_upstream&& r) override {
        switch (window_.offer(r, completions())) {
            case publish_window::verdict::hand_over:
                hand_to_paho(std::move(r));
                return;
            case publish_window::verdict::wait:
                has_waiting_.store(true);
                release_waiting();  // Paho may have completed some since offer() looked
                report_congestion();
                return;
            case publish_window::verdict::refuse:
                // QoS 0 is dropped (counted in the window's stats); QoS 1/2 are answered.
                if (r.qos > 0) {
                    push(upstream_published_event{
                        r.op, errc::rate_limited,
                        "the bridge's queue to the broker is full; publish again later"});
                }
                return;
        }
    }

    upstream_stats stats() const override {
        const publish_window_stats w = window_.stats(completions());
        upstream_stats out{w.inside, w.waiting, w.waiting_bytes, w.refused, std::nullopt};
        if (paho_heap_info) out.client_heap_bytes = paho_heap_info()->current_size;
        return out;
    }

    void stop(int timeout_ms) override {
        if (stopped_.exchange(true)) return;
        try {
            if (client_.is_connected()) {
                // What waits goes to Paho now, past the window: a shutdown publishes every
                // session's last presence at once, and Paho waits up to timeout_ms for
                // publishes still in flight (those, and the bridge's status) before it
                // disconnects.
                for (publish_upstream& r : window_.take_waiting())
                    hand_to_paho(std::move(r));
                disconnect_token_ = client_.disconnect(timeout_ms);
                disconnect_token_->wait_for(std::chrono::milliseconds(timeout_ms + 500));
            } else {
                client_.stop_consuming();
            }
        } catch (const mqtt::exception&) {
            // Already down; nothing to close.
        }
        try {
            client_.disable_callbacks();
        } catch (const mqtt::exception&) {
            // Paho refuses while a disconnect is still in progress; no event is handled after
            // stop() anyway (push() checks stopped_).
        }
    }

  private:
    // ---- the window of publishes inside Paho (publish_window.hpp) ----

    publish_completions completions() const {
        return {completed_.load(), completed_acknowledged_.load()};
    }

    // App thread: the waiting publishes the window has room for, in order.
    void release_waiting() {
        while (!stopped_) {
            std::optional<publish_upstream> r = window_.next(completions());
            if (!r) break;
            hand_to_paho(std::move(*r));
        }
        if (!window_.has_waiting()) has_waiting_.store(false);
        report_congestion();
    }

    // App thread: tells the engine when the window became congested or stopped being so.
    // Posted, not passed at once: publish() runs while the app carries out the engine's actions.
    void report_congestion() {
        if (window_.congested() == congestion_reported_) return;
        congestion_reported_ = window_.congested();
        push(upstream_congestion_event{congestion_reported_});
    }

    // App thread, the connection lost: the waiting publishes fail as those inside Paho did
    // just before (a QoS 0 one is dropped, as the engine drops those published while the broker
    // is away), in order, ahead of the loss itself.
    void fail_waiting() {
        for (publish_upstream& r : window_.take_waiting()) {
            if (r.qos > 0) {
                sink_(upstream_published_event{
                    r.op, errc::unavailable,
                    "the broker connection was lost before the publish could be sent"});
            }
        }
        has_waiting_.store(false);
        report_congestion();
    }

    // Paho's threads: a publish it held is written (QoS 0) or answered (`acknowledged`: QoS 1/2).
    // Wakes the app's thread when publishes wait for room (one wake-up at a time).
    void count_done(bool acknowledged) {
        if (acknowledged) completed_acknowledged_.fetch_add(1);
        completed_.fetch_add(1);
        if (has_waiting_.load() && !wake_posted_.exchange(true)) {
            asio::post(io_, [this] {
                wake_posted_.store(false);
                release_waiting();
            });
        }
    }

    void hand_to_paho(publish_upstream&& r) {
        try {
            if (session_.mqtt_version >= 5 &&
                (!r.response_topic.empty() || !r.correlation_data.empty())) {
                // A command (or an answer to one): MQTT 5 request/response properties.
                auto msg = mqtt::make_message(r.topic, r.payload.data(), r.payload.size(), r.qos,
                                              r.retain);
                mqtt::properties props;
                if (!r.response_topic.empty())
                    props.add({mqtt::property::RESPONSE_TOPIC, r.response_topic});
                if (!r.correlation_data.empty())
                    props.add({mqtt::property::CORRELATION_DATA, r.correlation_data});
                msg->set_properties(std::move(props));
                if (r.qos == 0) {
                    client_.publish(msg, nullptr, written_listener_);
                } else {
                    client_.publish(msg, to_context(r.op), published_);
                }
            } else if (r.qos == 0) {
                client_.publish(r.topic, r.payload.data(), r.payload.size(), 0, r.retain, nullptr,
                                written_listener_);
            } else {
                client_.publish(r.topic, r.payload.data(), r.payload.size(), r.qos, r.retain,
                                to_context(r.op), published_);
            }
            window_.handed(r);
        } catch (const mqtt::exception& e) {
            if (r.qos > 0) push(publish_failure(r.op, e.get_return_code(), 0));
        }
    }

    // Completion of a QoS 0 PUBLISH: Paho wrote it (or dropped it with the connection).
    struct written_listener final : mqtt::iaction_listener {
        explicit written_listener(paho_upstream& parent) : owner(parent) {}
        void on_success(const mqtt::token&) override { owner.count_done(false); }
        void on_failure(const mqtt::token&) override { owner.count_done(false); }
        paho_upstream& owner;
    };

    // Completion of SUBSCRIBE: the granted QoS (or refusal) per the SUBACK.
    struct subscribe_listener final : mqtt::iaction_listener {
        explicit subscribe_listener(paho_upstream& parent) : owner(parent) {}
        void on_success(const mqtt::token& tok) override {
            const auto codes = tok.get_subscribe_response().get_reason_codes();
            const int granted = codes.empty() ? -1 : static_cast<int>(codes.front());
            owner.push(upstream_subscribed_event{from_context(tok.get_user_context()), granted});
        }
        void on_failure(const mqtt::token& tok) override {
            const int reason = static_cast<int>(tok.get_reason_code());
            owner.push(upstream_subscribed_event{from_context(tok.get_user_context()),
                                                 reason >= 0x80 ? reason : -1});
        }
        paho_upstream& owner;
    };

    // Completion of a QoS 1/2 PUBLISH: PUBACK / PUBCOMP, or a failure.
    struct publish_listener final : mqtt::iaction_listener {
        explicit publish_listener(paho_upstream& parent) : owner(parent) {}
        void on_success(const mqtt::token& tok) override {
            owner.count_done(true);
            owner.push(
                upstream_published_event{from_context(tok.get_user_context()), std::nullopt, {}});
        }
        void on_failure(const mqtt::token& tok) override {
            owner.count_done(true);
            owner.push(publish_failure(from_context(tok.get_user_context()), tok.get_return_code(),
                                       static_cast<int>(tok.get_reason_code())));
        }
        paho_upstream& owner;
    };

    // Only records the CONNACK's session-present flag and Receive Maximum. Paho C 1.3.12 calls
    // this more than once per connection, so the connected handler (called once) is what reports
    // the connection.
    struct connect_listener final : mqtt::iaction_listener {
        explicit connect_listener(paho_upstream& parent) : owner(parent) {}
        void on_success(const mqtt::token& tok) override {
            // Throws when Paho reports a reconnect without a CONNACK response (seen when the
            // broker was down at start-up); this runs on Paho's thread, so nothing may escape.
            try {
                const mqtt::connect_response response = tok.get_connect_response();
                owner.session_present_ = response.is_session_present();
                const mqtt::properties& props = response.get_properties();
                owner.receive_maximum_ =
                    props.contains(mqtt::property::RECEIVE_MAXIMUM)
                        ? mqtt::get<std::uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM)
                        : 65535;
            } catch (const std::exception&) {
                owner.session_present_ = false;
                owner.receive_maximum_ = 65535;
            }
        }
        void on_failure(const mqtt::token&) override {}  // automatic reconnect keeps trying
        paho_upstream& owner;
    };

    // Any thread: queue the event; the first event of a batch schedules one drain. Called from
    // the app's thread too (a failed call), in which case the event still arrives later, never
    // re-entrantly inside the call.
    void push(upstream_event&& e) {
        bool first = false;
        {
            std::lock_guard<std::mutex> lock(inbox_mutex_);
            first = inbox_.empty();
            inbox_.push_back(std::move(e));
        }
        if (first) asio::post(io_, [this] { drain(); });
    }

    void drain() {
        {
            std::lock_guard<std::mutex> lock(inbox_mutex_);
            draining_.swap(inbox_);
        }
        for (auto& e : draining_) {
            if (stopped_) continue;
            if (std::holds_alternative<upstream_lost_event>(e)) fail_waiting();
            sink_(std::move(e));
            if (std::holds_alternative<upstream_connected_event>(e)) {
                window_.restart(completions(), receive_maximum_.load());
                release_waiting();
            }
        }
        draining_.clear();
    }

    asio::io_context& io_;
    upstream_options options_;
    broker_session session_;
    event_sink sink_;
    // Declared before client_ so it is destroyed after it: Paho's thread signals the token's
    // condition variable after waking our wait_for(), and only the client's teardown (which takes
    // the same Paho mutex) orders that signal before the token's destruction (found by TSan).
    mqtt::token_ptr disconnect_token_;
    mqtt::async_client client_;
    subscribe_listener subscribed_;
    publish_listener published_;
    written_listener written_listener_;
    connect_listener connected_;
    std::atomic<bool> session_present_{false};
    std::atomic<bool> stopped_{false};
    std::mutex inbox_mutex_;
    std::vector<upstream_event> inbox_;        // guarded by inbox_mutex_
    std::vector<upstream_event> draining_;     // app thread only
    publish_window window_;                    // app thread only
    bool congestion_reported_ = false;         // app thread only: the last congestion event
    std::atomic<std::uint64_t> completed_{0};  // publishes Paho completed (its threads count)
    std::atomic<std::uint64_t> completed_acknowledged_{0};  // of those, QoS 1/2
    std::atomic<std::uint16_t> receive_maximum_{65535};     // the last CONNACK's
    std::atomic<bool> has_waiting_{false};                  // window_ has waiting publishes
    std::atomic<bool> wake_posted_{false};                  // a release_waiting() is on its way
};

}  // namespace

std::unique_ptr<upstream> make_paho_upstream(asio::io_context& io, upstream_options options,
                                             broker_session session, upstream::event_sink sink) {
    return std::make_unique<paho_upstream>(io, std::move(options), session, std::move(sink));
}

}  // namespace mqttws
