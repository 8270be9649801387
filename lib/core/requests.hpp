// The requests a client sends (docs/protocol.md, "Client → bridge"), decoded from its frames.
//
// Decoding turns one text frame into one of the `*_request` structs, or into a `decode_failure`
// that says exactly what was wrong (and carries the request's `msgid` when one could be read,
// so the error can be matched). A binary frame is a publish with a raw payload. This is the only
// place that parses client JSON (with RapidJSON, in decode.cpp).
//
// Thread safety: `frame_decoder` keeps scratch buffers and belongs to one thread (with
// --threads, each I/O thread has its own and decodes the frames it reads: the engine's thread
// only handles the result); decode_binary_publish and signature_proof are pure.
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

// MQTT's Last Will for one WebSocket client (`will` in auth): published by the bridge when the
// client's connection ends without a clean close and it does not resume within `delay_ms`
// (docs/protocol.md, "Devices and commands").
struct last_will {
    std::string topic;
    std::string payload;
    std::uint8_t qos = 0;
    bool retain = false;
    std::int64_t delay_ms = 0;
};

struct auth_request {
    std::string client_id;   // `clientId`, or `deviceId` (then `is_device` is set)
    bool is_device = false;  // seed device dialect: auto-subscribe to its control topic
    // A device that takes `command` frames (and answers with `command_result`); without it,
    // commands reach it as `control` frames whose payload is the command.
    bool commands = false;
    std::optional<last_will> will;
    std::string token;     // opaque token or JWT
    std::string username;  // explicit user for a password file; defaults to client_id
    std::string password;  // defaults to token
    std::string session;   // resume token from an earlier auth_response
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
    msg_id id;               // the batch's own: in the error refusing it whole (e.g. unsigned)
};

// {"type":"command","id":…,"target":…|"targets":[…],"name":…,"params":…,…}: a command to one
// device or several, with a lifecycle reported in `command_status` frames (commands.hpp).
struct command_request {
    msg_id id;                         // the sender's id for it (required), echoed in every status
    std::vector<std::string> targets;  // device ids: `target`, or each of `targets`
    std::string name;
    std::string params_json = "{}";  // `params`, as compact JSON
    std::int64_t timeout_ms = 30000;
    std::string idempotency_key;  // `idempotencyKey`: a retry with the same key is not run again
    bool queue = false;           // an offline device gets it when it comes back, within ttl_ms
    std::int64_t ttl_ms = 60000;
};

// A device's answer to a command it received: {"type":"command_result","id":…,"status":…,
// "result":…}, or {"type":"command_progress","id":…,"progress":…} while it works.
struct command_result_request {
    enum class outcome { succeeded, failed, rejected, in_progress };
    std::string id;  // the `id` of the command frame the device received
    outcome status = outcome::succeeded;
    std::string result_json;  // `result` (or `progress`), compact JSON; empty when absent
    std::string reason;       // `reason`, for people (e.g. why it was rejected)
    msg_id msgid;
};

using client_request =
    std::variant<auth_request, subscribe_request, unsubscribe_request, publish_request, ack_request,
                 ping_request, device_report_request, batch_request, refresh_request,
                 command_request, command_result_request>;

// The signature fields of the requests a device may sign (publish, status, event, batch);
// nullptr for the others, which are never signed.
const signature_fields* signature_proof(const client_request& request);

// Whether the request publishes to the broker: a binary frame, or one of the kinds above. These
// are the frames backpressure holds back (publish_relay.hpp), on whichever thread decoded them.
bool publishes(const client_request& request, bool binary);

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

// A frame decoded on the thread that read it, for the engine's thread (engine::client_decoded):
// the decoder's verdict, and for a signed text frame (its request has a `sig`, see
// signature_proof) the frame itself, since a signature is checked over the frame's bytes. Other
// frames (acks and unsigned publishes, most often) cross threads without their text. A binary
// frame (`binary`) is a publish or a failure, and never carries a signature.
struct decoded_frame {
    std::variant<client_request, decode_failure> result;
    std::string signable_text;
    bool binary = false;
};

// Decodes client text frames. Reuses its parse buffers between calls.
class frame_decoder {
  public:
    explicit frame_decoder(decode_limits limits = {});
    ~frame_decoder();
    frame_decoder(const frame_decoder&) = delete;
    frame_decoder& operator=(const frame_decoder&) = delete;

    std::variant<client_request, decode_failure> decode(std::string_view text);
    // decode(), keeping the text of a signed frame (see decoded_frame).
    decoded_frame decode_for_engine(std::string_view text);
    // decode_binary_publish() with these limits.
    decoded_frame decode_binary_for_engine(std::string_view frame) const;

  private:
    struct impl;
    decode_limits limits_;
    std::unique_ptr<impl> impl_;
};

}  // namespace mqttws
