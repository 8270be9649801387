// What the bridge remembers of commands sent with an `idempotencyKey`: per sender and key, the
// command's targets and how each one ended, so that a retry — after a lost connection, or after
// a restart of the bridge with --state-dir — is answered with the stored outcome instead of
// running the command again (commands.hpp). Bounded in count and in time (oldest forgotten
// first), and written to the state directory one JSON line per change.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mqttws {

// The states of one target of a command (docs/protocol.md, "Devices and commands").
enum class command_state : std::uint8_t {
    queued,       // accepted; sent to the device, or waiting for it to come online
    delivered,    // the device's session took it (for QoS >= 1: the device acknowledged it)
    in_progress,  // the device said it is working on it
    succeeded,
    failed,
    rejected,
    timed_out,  // no outcome within timeoutMs; not final: a late outcome is still reported
};
std::string_view name(command_state s);
std::optional<command_state> command_state_named(std::string_view name);
inline bool is_final(command_state s) {
    return s == command_state::succeeded || s == command_state::failed ||
           s == command_state::rejected;
}

struct remembered_target {
    std::string device;
    command_state state = command_state::queued;
    std::string result_json;  // the device's result (compact JSON); empty when none
    std::string reason;       // why it was rejected by the bridge, or ended without outcome
};

struct remembered_command {
    std::string name;
    std::vector<remembered_target> targets;
    std::int64_t created_wall_ms = 0;
    std::uint64_t running = 0;  // the command in flight (command_desk's number); 0: over
};

class idempotency_store {
  public:
    idempotency_store(std::size_t max_entries, std::int64_t window_ms)
        : max_entries_(max_entries), window_ms_(window_ms) {}

    // `sender` is who sent it (the user, or the client id), `key` its idempotencyKey.
    static std::string key_of(std::string_view sender, std::string_view key);

    remembered_command* find(const std::string& key, std::int64_t now_wall_ms);
    remembered_command& put(const std::string& key, remembered_command command);
    // Forgets what is older than the window.
    void expire(std::int64_t now_wall_ms);
    std::size_t size() const { return entries_.size(); }

    // One line of the state file for `key` as it is now; and reading such lines back (the
    // last line of a key wins; what is expired or malformed is skipped).
    std::string line(const std::string& key) const;
    void restore(const std::vector<std::string>& lines, std::int64_t now_wall_ms);
    // Every entry as lines: the compacted state file.
    std::string all_lines() const;

  private:
    void evict_oldest();

    std::size_t max_entries_;
    std::int64_t window_ms_;
    std::unordered_map<std::string, remembered_command> entries_;
    std::deque<std::pair<std::int64_t, std::string>> order_;  // created, key; oldest first
};

}  // namespace mqttws
