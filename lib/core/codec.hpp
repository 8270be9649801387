// The wire protocol v1 (docs/protocol.md): JSON text frames ⇄ structs.
//
// This is the only file that uses RapidJSON. Decoding turns one client text frame into one of
// the `*_request` structs, or into a `decode_failure` that says exactly what was wrong (and
// carries the request's `msgid` when one could be read, so the error can be matched).
// Encoding renders the bridge's frames; a broker message is rendered once per message by
// `message_body` and finished per recipient with only the fields that differ.
//
// Thread safety: `frame_decoder` keeps scratch buffers and belongs to one thread; the free
// functions are pure.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.hpp"

namespace mqttws {

// A client-chosen request id, kept as the JSON text it arrived as (`"s1"` with its quotes, or
// `17`) so that replies echo it byte for byte. Empty when the request had none.
struct msg_id {
    std::string json;
    bool empty() const { return json.empty(); }
    bool operator==(const msg_id& other) const { return json == other.json; }
};

struct auth_request {
    std::string client_id;   // `clientId`, or `deviceId` (then `is_device` is set)
    bool is_device = false;  // seed device dialect: auto-subscribe to its control topic
    std::string token;       // opaque token or JWT
    std::string username;    // explicit user for a password file; defaults to client_id
    std::string password;    // defaults to token
    std::string session;     // resume token from an earlier auth_response
    std::optional<std::uint64_t> last_seq;  // last `seq` the client saw in that session
    bool resume = true;  // false: no session token, no `seq`, nothing kept after a drop
    // true: the client cannot see WebSocket pings (a browser) and wants `ping` frames instead
    bool heartbeat = false;
    msg_id id;
};

// How deliveries under one subscription reach the client (docs/protocol.md, "Flow control").
struct subscription_options {
    double max_rate = 0;   // `maxRate`: at most this many QoS 0 messages per topic per second
    bool conflate = true;  // `conflate`: over budget, keep only the newest QoS 0 per topic
    bool binary = false;   // `binary`: deliveries as binary frames (see protocol.md)
    std::uint16_t batch_max = 0;  // `batch.maxMessages`: deliveries gathered into `batch` frames
    std::uint32_t batch_delay_ms = 0;  // `batch.maxDelayMs`: ...sent at the latest after this
};

struct subscribe_request {
    std::vector<std::string> filters;  // `topic`, or each of `topics`
    std::uint8_t qos = 0;
    subscription_options options;
    msg_id id;
};

struct unsubscribe_request {
    std::vector<std::string> filters;
    msg_id id;
};

// What a device signs a frame with (frame_signature.hpp): top-level members of a publish,
// status, event or batch frame.
struct signature_fields {
    std::optional<std::int64_t> ts;  // `ts`, ms since the Unix epoch
    std::string nonce;               // `nonce`
    std::optional<std::string> sig;  // `sig`
};

struct publish_request {
    std::string topic;
    std::string payload;  // the bytes to publish (already decoded from JSON / base64)
    std::uint8_t qos = 0;
    bool retain = false;
    bool dup = false;  // a resend of an earlier publish with the same msgid
    msg_id id;
    signature_fields proof;
};

// The client acknowledges a delivery of QoS >= 1 by the numeric `msgid` the bridge gave it.
struct ack_request {
    std::uint64_t delivery_id = 0;
};

struct ping_request {
    msg_id id;
};

// A new token for the same identity, before the current one expires: {"type":"refresh",
// "token":"…"} (the bridge sent `token_expiring`).
struct refresh_request {
    std::string token;
    msg_id id;
};

// Seed device dialect: {"type":"status"|"event","deviceId":…,"data":…}. The whole frame is
// published (as compact JSON) to <prefix>/<deviceId>/status|event.
struct device_report_request {
    enum class kind { status, event };
    kind what = kind::status;
    std::string device_id;
    std::string frame_json;  // compact re-serialisation of the whole frame
    msg_id id;
    signature_fields proof;
};

struct decode_failure {
    errc code = errc::bad_request;
    std::string message;
    msg_id id;  // when the frame was an object with a readable msgid
};

// Several publishes in one frame: {"type":"batch","messages":[<publish frame>, …]}. Each entry
// is decoded on its own; one that is wrong does not stop the others.
struct batch_request {
    std::vector<std::variant<publish_request, decode_failure>> entries;
    signature_fields proof;  // a batch is signed as a whole
};

using client_request =
    std::variant<auth_request, subscribe_request, unsubscribe_request, publish_request, ack_request,
                 ping_request, device_report_request, batch_request, refresh_request>;

// Decodes a binary frame: a publish with a raw payload (layout in docs/protocol.md, "Binary
// frames"). Its msgid is a number, echoed in the JSON `ack`.
std::variant<publish_request, decode_failure> decode_binary_publish(std::string_view frame,
                                                                    std::size_t max_payload_bytes);

struct decode_limits {
    std::size_t max_depth = 32;               // JSON nesting; deeper frames are refused unparsed
    std::size_t max_payload_bytes = 1 << 20;  // decoded publish payload
    std::size_t max_msgid_bytes = 128;
    std::size_t max_filters_per_request = 64;
    std::size_t max_batch = 100;  // entries of a `batch` frame
};

// Decodes client text frames. Reuses its parse buffers between calls.
class frame_decoder {
  public:
    explicit frame_decoder(decode_limits limits = {});
    ~frame_decoder();
    frame_decoder(const frame_decoder&) = delete;
    frame_decoder& operator=(const frame_decoder&) = delete;

    std::variant<client_request, decode_failure> decode(std::string_view text);

  private:
    struct impl;
    decode_limits limits_;
    std::unique_ptr<impl> impl_;
};

// True when nesting of arrays/objects in `json` goes deeper than `max_depth` (strings are
// skipped correctly). Cheap pre-check so that hostile input never reaches the parser's stack.
bool json_nesting_exceeds(std::string_view json, std::size_t max_depth) noexcept;

// A client id: 1 to 128 bytes of UTF-8 without '/', '+', '#' or control characters (so that
// it can stand in a topic level, e.g. for the ACL's %c).
bool is_valid_client_id(std::string_view id) noexcept;

// True when `bytes` is well-formed UTF-8 (any code point; NUL allowed).
bool is_valid_utf8(std::string_view bytes) noexcept;

// `s` (UTF-8) as a JSON string literal, quotes included: for logs and other JSON the app writes.
std::string encode_json_string(std::string_view s);

// ---- Encoding: bridge → client frames. Timestamps are milliseconds since the Unix epoch. ----

// `session` empty: the client opted out of resuming (no session fields are written).
// `ping_interval_ms` > 0: the client asked for `ping` frames, sent after that much silence.
// `last_seq`: with a session present, the seq of its last delivery so far (`lastSeq`).
std::string encode_auth_response(std::string_view client_id, std::string_view session, bool resumed,
                                 bool session_present, std::int64_t timestamp_ms, const msg_id& id,
                                 std::int64_t ping_interval_ms = 0,
                                 std::optional<std::uint64_t> last_seq = std::nullopt);
std::string encode_suback(const msg_id& id, std::string_view filter, int granted_qos);
std::string encode_unsuback(const msg_id& id, std::string_view filter);
std::string encode_ack_ok(const msg_id& id);
std::string encode_ack_error(const msg_id& id, errc code, std::string_view message);
// `topic` is added when the error is about one topic of a multi-topic request.
std::string encode_error(errc code, std::string_view message, const msg_id& id,
                         std::string_view topic = {});
std::string encode_pong(std::int64_t timestamp_ms, const msg_id& id);
std::string encode_upstream_status(bool up, std::int64_t timestamp_ms);
// {"type":"ping","timestamp":…}: the bridge is alive (clients that asked for heartbeats).
std::string encode_app_ping(std::int64_t timestamp_ms);
// {"type":"token_expiring","in":…,"expiresAt":…}: the client's token expires in `in_ms`.
std::string encode_token_expiring(std::int64_t in_ms, std::int64_t expires_at_ms);
// {"type":"refresh_response","status":"success","expiresAt":…} (no expiresAt: never expires).
std::string encode_refresh_response(std::optional<std::int64_t> expires_at_ms, const msg_id& id);

// What differs per recipient of one broker message.
struct delivery_fields {
    std::uint8_t qos = 0;
    std::uint64_t msgid = 0;  // written when qos >= 1
    std::uint64_t seq = 0;    // written when non-zero
    bool dup = false;
};

// One broker message, rendered for many recipients: the JSON `message` (or `control`) frame
// without its per-recipient fields, which `finish()` appends, is built once on first use; so is
// the binary frame's fixed part. In JSON the payload is embedded as a JSON value when it is JSON
// text, as a string when it is other UTF-8, and as base64 otherwise. `redelivered` (the broker
// resent it after a reconnect) makes every rendering carry dup.
class message_body {
  public:
    message_body(std::string_view frame_type, std::string topic, std::string payload, bool retain,
                 std::int64_t timestamp_ms, std::size_t max_embed_depth = 32,
                 bool redelivered = false);
    std::string finish(const delivery_fields& fields) const;
    std::string finish_binary(const delivery_fields& fields) const;
    // The JSON frame for recipients with nothing of their own (qos 0, no seq), built once.
    const std::shared_ptr<const std::string>& shared_qos0() const;
    // JSON for use inside a `batch` frame: the same as finish().
    const std::string& topic() const { return topic_; }
    const std::string& payload() const { return payload_; }
    std::size_t size() const { return topic_.size() + payload_.size() + 96; }

  private:
    const std::string& json_prefix() const;

    bool control_;
    std::string topic_;
    std::string payload_;
    bool retain_;
    std::int64_t timestamp_ms_;
    std::size_t max_embed_depth_;
    bool redelivered_;
    mutable std::string prefix_;  // `{"type":…,"topic":…,"payload":…,"retain":…,"timestamp":…`
    mutable std::shared_ptr<const std::string> shared_qos0_;
};

// {"type":"batch","messages":[…]} from finished `message` frames.
std::string encode_batch(const std::vector<std::string>& messages);

}  // namespace mqttws
