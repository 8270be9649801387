// One broker message as the clients it goes to receive it (docs/protocol.md, "message" and
// "Binary frames"): rendered once per message and finished per recipient with only the fields
// that differ (qos, msgid, seq, dup).
// Thread safety: a message_body is built on the engine's thread and then only read; its lazily
// built renderings are not synchronised, so it stays on that thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/frame_head.hpp"

namespace mqttws {

// What differs per recipient of one broker message.
struct delivery_fields {
    std::uint8_t qos = 0;
    std::uint64_t msgid = 0;  // written when qos >= 1
    std::uint64_t seq = 0;    // written when non-zero
    bool dup = false;
};

// A frame in two parts: `head`, the bytes of one recipient, then `shared`, the same bytes for
// every recipient of the message. The edge writes head + shared as one WebSocket frame, queuing
// the shared part on every connection without copying it (ws_server_impl.hpp).
struct split_frame {
    frame_head head;
    std::shared_ptr<const std::string> shared;
};

// One broker message, rendered for many recipients. Why split frames: in the default
// configuration sessions are resumable, so every delivery carries the recipient's own `seq` (and
// QoS 1/2 its `msgid`); a frame finished per recipient would copy the whole message for each one.
// Instead the per-recipient fields come first — JSON
//   {"type":"message","qos":1,"msgid":7,"seq":31,  +
//   "topic":…,"payload":…,"retain":…,"timestamp":…}
// and the binary layout (docs/protocol.md, "Binary frames") already starts with them — so the
// rest, which holds the topic and payload, is rendered once per message and shared by every
// recipient, whatever its seq. Only a few dozen bytes are written per recipient.
//
// In JSON the payload is embedded as a JSON value when it is JSON text, as a string when it is
// other UTF-8, and as base64 otherwise. `redelivered` (the broker resent it after a reconnect)
// makes every rendering carry dup.
class message_body {
  public:
    message_body(std::string_view frame_type, std::string topic, std::string payload, bool retain,
                 std::int64_t timestamp_ms, std::size_t max_embed_depth = 32,
                 bool redelivered = false);
    // A command as a device receives it (commands.hpp): {"type":"command",<per-recipient
    // fields>,<members>,"timestamp":…} where `members` is the command's own members as JSON text
    // without braces; `command_id` its id, for matching the device's ack.
    static std::shared_ptr<const message_body> command(std::string topic, std::string members,
                                                       std::int64_t timestamp_ms,
                                                       std::string command_id);
    // The command id of a `command` body; empty for other messages.
    const std::string& command_id() const { return command_id_; }

    split_frame json(const delivery_fields& fields) const;
    split_frame binary(const delivery_fields& fields) const;
    // The whole JSON frame in one string (an entry of a `batch` frame).
    std::string finish(const delivery_fields& fields) const;
    // The whole JSON frame for recipients with nothing of their own (qos 0, no seq), built once:
    // every such recipient shares all of it.
    const std::shared_ptr<const std::string>& shared_qos0() const;
    const std::string& topic() const { return topic_; }
    const std::string& payload() const { return payload_; }
    std::size_t size() const { return topic_.size() + payload_.size() + 96; }

  private:
    frame_head json_head(const delivery_fields& fields) const;
    const std::shared_ptr<const std::string>& json_rest() const;

    enum class kind : std::uint8_t { message, control, command };
    kind kind_;
    std::string command_id_;
    std::string topic_;
    std::string payload_;
    bool retain_;
    std::int64_t timestamp_ms_;
    std::size_t max_embed_depth_;
    bool redelivered_;
    // Built on first use: `"topic":…,"timestamp":…}`, the binary frame after its head, and the
    // whole qos 0 JSON frame.
    mutable std::shared_ptr<const std::string> json_rest_;
    mutable std::shared_ptr<const std::string> binary_rest_;
    mutable std::shared_ptr<const std::string> shared_qos0_;
};

// {"type":"batch","messages":[…]} from finished `message` frames.
std::string encode_batch(const std::vector<std::string>& messages);

}  // namespace mqttws
