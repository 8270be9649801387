// What the bridge remembers of commands sent with an `idempotencyKey`: per sender and key, the
// command's targets and how each one ended, so that a retry — after a lost connection, or after
// a restart of the bridge with --state-dir — is answered with the stored outcome instead of
// running the command again (commands.hpp). Bounded in count and in time (oldest forgotten
// first), and written to the state directory one JSON line per change.
//
// Engine shards share one store, so that a retry on another thread than the first try is
// recognised too: each stored command names the shard that runs it, and that shard alone
// updates it.
//
// Thread safety: every member takes the store's lock, and what it returns is a copy; any thread.
// (Commands with a key are few next to messages: one lock per command step costs nothing.)
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
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
    std::size_t shard = 0;     // the engine shard that runs it (0 for one engine)
    std::uint64_t number = 0;  // its number there (command_desk's); 0: read back at start
    bool running = false;      // still in flight there
};

class idempotency_store {
  public:
    idempotency_store(std::size_t max_entries, std::int64_t window_ms)
        : max_entries_(max_entries), window_ms_(window_ms) {}

    // `sender` is who sent it (the user, or the client id), `key` its idempotencyKey.
    static std::string key_of(std::string_view sender, std::string_view key);

    std::optional<remembered_command> find(const std::string& key, std::int64_t now_wall_ms) const;
    // The command stored under `key`; or, when there is none, stores `command` under it and
    // returns nothing. In one step, so that two shards given the same key at once do not both
    // run the command.
    std::optional<remembered_command> find_or_put(const std::string& key,
                                                  remembered_command command,
                                                  std::int64_t now_wall_ms);
    // The new states of the command stored under `key`, by the shard that runs it: stored (it
    // keeps when it was first stored) unless the key now names another command, i.e. this one
    // was forgotten and the key used again. Returns its line for the state file, or "".
    std::string update(const std::string& key, remembered_command command);
    // The command `number` of `shard` is over there: a retry from now on is answered from the
    // store alone. Nothing is stored if the key was forgotten or names another command by now.
    void finished(const std::string& key, std::size_t shard, std::uint64_t number);
    // Forgets what is older than the window, except commands still running (until they end).
    void expire(std::int64_t now_wall_ms);
    std::size_t size() const;

    // Reading lines of the state file back (the last line of a key wins; what is expired or
    // malformed is skipped); and every entry as lines: the compacted state file.
    void restore(const std::vector<std::string>& lines, std::int64_t now_wall_ms);
    std::string all_lines() const;

  private:
    // With the lock held.
    const remembered_command* live(const std::string& key, std::int64_t now_wall_ms) const;
    void put(const std::string& key, remembered_command command);
    std::string line(const std::string& key, const remembered_command& c) const;

    const std::size_t max_entries_;
    const std::int64_t window_ms_;
    mutable std::mutex lock_;
    std::unordered_map<std::string, remembered_command> entries_;
    // When each key was stored, oldest first. A record whose time is not its entry's any more
    // (the key was stored again after it expired) is skipped.
    std::deque<std::pair<std::int64_t, std::string>> order_;
};

}  // namespace mqttws
