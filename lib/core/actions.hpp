// What the engine asks the edges to do. The engine never performs I/O; each event it handles
// appends actions to a list, and the app carries them out in order after the call returns.
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/detached_sessions.hpp"
#include "core/error.hpp"
#include "core/frame_head.hpp"
#include "core/idempotency.hpp"

namespace mqttws {

using connection_id = std::uint64_t;  // one WebSocket connection, assigned by the edge
using op_id = std::uint64_t;          // one upstream operation, assigned by the engine

// An encoded frame. A broadcast builds it once and every recipient shares the same bytes, so
// the edge can frame it once and write it to many sockets.
using frame_ptr = std::shared_ptr<const std::string>;

inline frame_ptr make_frame(std::string text) {
    return std::make_shared<const std::string>(std::move(text));
}

struct send_frame {
    connection_id to = 0;
    frame_ptr frame;
    bool binary = false;  // a binary WebSocket frame (else text)
    // Bytes of this recipient only, written before `frame` in the same WebSocket frame, so that
    // `frame` can be shared by every recipient (core/message_body.hpp, split_frame).
    frame_head head;
};

// A WebSocket ping (heartbeat); the pong comes back as engine::client_alive.
struct ping_client {
    connection_id who = 0;
};

struct close_client {
    connection_id who = 0;
    close_code code = close_code::normal;
    std::string reason;
};

// Backpressure on a client that publishes faster than the broker connection takes it: stop
// reading its frames (from its next one on), so that its TCP window fills and it slows down...
struct pause_reading {
    connection_id who = 0;
};
// ... and read them again.
struct resume_reading {
    connection_id who = 0;
};

// Completion: engine::upstream_subscribed(op, granted).
struct subscribe_upstream {
    op_id op = 0;
    std::string filter;
    std::uint8_t qos = 0;
    std::uint32_t subscription_id = 0;  // MQTT v5 subscription identifier; 0 with 3.1.1
    // MQTT v5 retain handling: true = the broker replays retained messages (0), false = only if
    // the subscription is new (1), used when only the QoS of a held filter changes.
    bool replay_retained = true;
    // MQTT v5 No Local: the broker does not send the bridge its own publishes back; the bridge
    // delivers them to its own clients itself (publish_relay, "local fan-out").
    bool no_local = false;
};

struct unsubscribe_upstream {
    op_id op = 0;
    std::string filter;
};

// qos 0 publishes have no completion event; qos 1/2 end in engine::upstream_published(op, …).
struct publish_upstream {
    op_id op = 0;
    std::string topic;
    std::string payload;
    std::uint8_t qos = 0;
    bool retain = false;
    // MQTT v5 request/response properties of a command (commands.hpp); ignored with 3.1.1,
    // where the payload carries them.
    std::string response_topic;
    std::string correlation_data;
};

// One line of the audit trail (--audit-log): authentications, refusals, control publishes.
struct audit_record {
    std::string event;  // "auth_success", "auth_failure", "denied", "publish"
    std::string client_id;
    std::string remote_address;
    std::string topic;
    std::string detail;
};

enum class log_level { debug, info, warn, error };

struct log_line {
    log_level level = log_level::info;
    std::string text;
};

// What the log says when the broker connection returns (`session_kept`: the broker still held
// the bridge's filters) or is lost: said by the one engine, or with engine shards by the hub.
inline std::string upstream_connected_line(bool session_kept, std::size_t filters_held) {
    return std::string("upstream connected (") + (session_kept ? "session kept" : "new session") +
           "), " + std::to_string(filters_held) + " filters held";
}
inline std::string upstream_lost_line(std::string_view reason) {
    return "upstream connection lost: " + std::string(reason);
}

// What the bridge keeps across restarts when --state-dir is set (idempotency keys, the devices
// it reported online): one line appended to a file of the state directory, or the file's whole
// content replaced (`replace`: after a restart, to compact it). The engine owns the format.
struct state_record {
    std::string file;  // a plain name: "commands.jsonl", "presence.jsonl"
    std::string text;  // one line (without '\n'), or with `replace` the whole content
    bool replace = false;
};

// Engine shards only (engine_config::behind_hub): a device's first session on this shard began
// (`online`), or its last one ended. The hub tells the other shards at once
// (engine::peer_presence), so that the bridge's commands know its own devices as one engine does,
// not only once the broker accepted their presence message.
struct device_presence {
    std::string device;
    bool online = false;
};

// ---- engine shards only: what one shard asks of another ----
// engine_shards posts each to the shard it names (peer_shard_of), whose engine carries it out
// there (engine::from_peer_shard).

// Past --max-detached-sessions, the session that has waited longest in the bridge is another
// shard's; that shard ends it, unless it was resumed meanwhile.
struct end_detached_session {
    detached_sessions::entry session;
};

// A retry of a command with an idempotencyKey came to another shard than the one running the
// command (idempotency.hpp), and was answered with the stored states, `told`. The running shard
// makes the retry's session the one told what follows, with the retry's `id` (a request id's
// JSON), and tells it again the targets whose state moved on since.
struct adopt_command {
    std::size_t shard = 0;  // the one running it
    std::uint64_t number = 0;
    std::size_t owner_shard = 0;
    std::uint64_t owner_session = 0;  // its session_key there
    std::string id_json;
    std::vector<command_state> told;
    std::string key;  // the command's key in the idempotency store
};

// A command's `command_status` or `command_summary` frame for its sender, whose session is on
// another shard (after adopt_command); that shard sends it as its own.
struct tell_command_owner {
    std::size_t shard = 0;
    std::uint64_t session = 0;
    bool summary = false;
    std::string frame;
};

using action = std::variant<send_frame, ping_client, close_client, pause_reading, resume_reading,
                            subscribe_upstream, unsubscribe_upstream, publish_upstream, log_line,
                            audit_record, state_record, device_presence, end_detached_session,
                            adopt_command, tell_command_owner>;
using action_list = std::vector<action>;

// The connection an action is for, when it is one for a client; else nothing.
inline std::optional<connection_id> client_of(const action& a) {
    if (const auto* s = std::get_if<send_frame>(&a)) return s->to;
    if (const auto* p = std::get_if<ping_client>(&a)) return p->who;
    if (const auto* c = std::get_if<close_client>(&a)) return c->who;
    if (const auto* p = std::get_if<pause_reading>(&a)) return p->who;
    if (const auto* r = std::get_if<resume_reading>(&a)) return r->who;
    return std::nullopt;
}

// The shard an action is for, when it is one shard's request of another; else nothing.
inline std::optional<std::size_t> peer_shard_of(const action& a) {
    if (const auto* end = std::get_if<end_detached_session>(&a)) return end->session.shard;
    if (const auto* adopt = std::get_if<adopt_command>(&a)) return adopt->shard;
    if (const auto* tell = std::get_if<tell_command_owner>(&a)) return tell->shard;
    return std::nullopt;
}

}  // namespace mqttws
