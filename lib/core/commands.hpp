// Commands with a lifecycle (docs/protocol.md, "Devices and commands"): a client sends
// {"type":"command","id":…,"target":…,"name":…,"params":…} and is told each step in
// {"type":"command_status","id":…,"target":…,"state":…} frames, as AWS IoT Commands does.
//
// The sender's side:
// - Each target is checked against the sender's publish ACL (on the device's control topic),
//   and against what the bridge knows of the device's presence: an offline device is
//   `rejected` (`device_offline`) at once, or with "queue":true waits up to ttlMs for it.
// - The command is published, QoS 1, to <prefix>/<target>/control as an MQTT 5 request: the
//   bridge's response topic and a correlation id as properties, and in the payload too (MQTT
//   3.1.1 has no properties). So a plain MQTT device can answer as well as a WebSocket one.
// - `queued` once the broker took it; then `delivered`, `in_progress`, and one of `succeeded`,
//   `failed`, `rejected` as the device (or its bridge) reports on the response topic. Without an
//   outcome within timeoutMs: `timed_out`, which is not final — a late outcome is still told.
//   With several targets, a `command_summary` follows once each has an outcome or timed out.
// - With an idempotencyKey, a second command with the same key from the same sender (user, or
//   client id) is not run again: it is answered with the stored states (idempotency.hpp), and
//   while the command runs, what follows is told to the retry instead of the first try. With
//   engine shards the store is the bridge's: the retry's shard answers it, and the shard running
//   the command tells the retry's session through it (adopt_command, tell_command_owner).
//
// The device's side (a device connected to this bridge, whichever bridge sent the command):
// - A command on a device's control topic reaches it as a `command` frame (a device that asked
//   for `commands`) or as the seed's `control` frame; the bridge remembers where its answer goes.
// - The device's ack of the frame (QoS 1) is reported as `delivered`; its `command_progress` and
//   `command_result` frames are published to the command's response topic.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/broker_message.hpp"
#include "core/delivery_pacer.hpp"
#include "core/engine_context.hpp"
#include "core/idempotency.hpp"
#include "core/presence.hpp"
#include "core/publish_relay.hpp"
#include "core/session_directory.hpp"

namespace mqttws {

class command_desk {
  public:
    // `remembered`: the commands stored by idempotency key (shared by engine shards).
    command_desk(engine_context& ctx, session_directory& sessions, delivery_pacer& pacer,
                 publish_relay& relay, presence_keeper& presence,
                 std::shared_ptr<idempotency_store> remembered);

    // The topic devices answer this bridge's commands on (the bridge subscribes to it).
    const std::string& response_topic() const { return response_topic_; }

    // ---- the sender's side ----
    void handle(session& s, command_request& r, action_list& out);
    // The broker confirmed (or refused) the publish of a command to one target.
    void published(std::uint64_t tag, std::optional<errc> error, std::string_view message,
                   action_list& out);
    // A message on the response topic: a device's (or its bridge's) report.
    void heard(const broker_message& m, action_list& out);
    // `device` is online now: commands waiting for it go out.
    void device_online(const std::string& device, action_list& out);
    void tick(std::int64_t now, action_list& out);
    std::size_t in_flight() const { return commands_.size(); }
    // Engine shards: a retry on another shard takes over command `a.number` of this one; and a
    // frame of a command of another shard for a session of this one.
    void adopt(const adopt_command& a, action_list& out);
    void tell_owner(const tell_command_owner& t, action_list& out);

    // ---- the device's side ----
    // The command in `m`, a message on the control topic of device `s`, as the body to deliver
    // to it; nullptr when `m` is not a command (or `s` takes `control` frames).
    std::shared_ptr<const message_body> command_for(session& s, const broker_message& m);
    // Device `s` took command `command_id` (acked it, or was handed it at QoS 0).
    void delivered(session& s, const std::string& command_id, action_list& out);
    void handle(session& s, command_result_request& r, action_list& out);

    // --state-dir: what the previous run wrote (commands.jsonl).
    void restore(const std::vector<std::string>& lines, action_list& out);

  private:
    struct target_run {
        std::string device;
        std::string correlation;  // set when published
        command_state state = command_state::queued;
        bool waiting = false;    // for the device to come online (queue:true)
        bool timed_out = false;  // `timed_out` was told (not final)
        std::string result_json;
        std::string reason;
        std::int64_t sent_ms = 0;
        std::int64_t deadline_ms = 0;  // timed out after this (0: not sent yet)
        std::int64_t wait_until_ms = 0;
    };
    struct command {
        std::uint64_t number = 0;
        std::size_t owner_shard = 0;  // the shard of the session told its steps (a retry's
        session_key owner{};          // may be on another one than this)
        msg_id id;                    // the owner's
        std::string sender;
        std::string remote_address;   // for the audit log
        std::string idempotency_key;  // idempotency_store::key_of, or empty
        std::string name;
        std::string params_json;
        std::int64_t timeout_ms = 0;
        std::vector<target_run> targets;
        bool summarized = false;
        std::int64_t forget_at_ms = 0;  // set once every target is final or timed out
    };
    struct target_ref {
        std::uint64_t command = 0;
        std::size_t index = 0;
    };

    void send_to_device(command& c, std::size_t i, action_list& out);
    // Moves target `i` of `c` to `state` (ignoring a step back) and tells the sender.
    void advance(command& c, std::size_t i, command_state state, std::string result_json,
                 std::string reason, action_list& out);
    void tell(const command& c, std::size_t i, action_list& out);
    void send_to_owner(const command& c, out_kind kind, std::string frame, action_list& out);
    // A frame for session `owner` of shard `owner_shard`: sent, or handed to that shard.
    void send_to(std::size_t owner_shard, session_key owner, out_kind kind, std::string frame,
                 action_list& out);
    void summarize_if_done(command& c, action_list& out);
    // What the idempotency store keeps of `c` while it runs; and storing it after each step.
    remembered_command stored_form(const command& c) const;
    void remember(const command& c, action_list& out);
    // `r` repeats the idempotencyKey of `stored` (`key` in the store): told the stored states;
    // takes over the command if it still runs.
    void answer_retry(session& s, const std::string& key, const command_request& r,
                      const remembered_command& stored, action_list& out);
    // Tells the session `owner` of shard `owner_shard` the targets of `stored` whose state is not
    // the one in `told` (every target when `told` is empty), and the summary once they are all
    // over, unless `told` was over already.
    void tell_stored(std::size_t owner_shard, session_key owner, const msg_id& id,
                     const remembered_command& stored, const std::vector<command_state>& told,
                     action_list& out);
    void report(session& s, const std::string& command_id, std::string_view status,
                const std::string& result_json, const std::string& reason, action_list& out);
    target_run* find(const target_ref& ref);

    engine_context& ctx_;
    session_directory& sessions_;
    delivery_pacer& pacer_;
    publish_relay& relay_;
    presence_keeper& presence_;
    std::string response_topic_;
    std::uint64_t next_number_ = 1;
    std::uint64_t next_tag_ = 1;
    std::map<std::uint64_t, command> commands_;  // in flight, by number
    std::unordered_map<std::string, target_ref> by_correlation_;
    std::unordered_map<std::uint64_t, target_ref> by_tag_;  // publishes awaiting the broker
    std::shared_ptr<idempotency_store> remembered_;
};

}  // namespace mqttws
