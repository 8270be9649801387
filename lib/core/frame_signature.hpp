// Message integrity for devices (--device-keys): a device proves each `status`, `event`,
// `publish` or `batch` frame is its own and fresh with an HMAC-SHA256 signature, a timestamp and
// a nonce. docs/protocol.md ("Signed frames") is the byte-exact definition; in short:
//
//   the device writes its frame as usual, with "ts" (ms since the Unix epoch) and "nonce" (8 to
//   64 characters of A-Z a-z 0-9 - _) among its members, e.g.
//       {"type":"status","deviceId":"d1","temperature":21.5,"ts":1764842400000,"nonce":"k3J9x1aQ"}
//   signs exactly those bytes (UTF-8) with HMAC-SHA256 under its secret, and appends the
//   signature as the last member, base64url without padding, right before the final '}':
//       {...,"nonce":"k3J9x1aQ","sig":"<43 characters>"}
//
// So the signed bytes are the frame's own text up to the `,"sig":` of its last member, plus '}'
// — no canonical re-serialisation of JSON is needed, and a device in C or Python signs what it
// sends. The bridge refuses a frame with `bad_signature` when the signature does not verify (or
// is missing for a device whose key says `required`), and with `replayed` when its `ts` is
// outside ±replay_window of the bridge's clock or its nonce was already seen within the window.
//
// Memory: the nonces seen in the window, at most `max_nonces_per_device` per device. When a
// device goes beyond that, the oldest are forgotten and frames not newer than the newest
// forgotten one are refused as replayed (they could not be told apart from replays).
//
// Thread safety: device_keys is immutable after parse(); replay_guard belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "core/config_text.hpp"
#include "core/fifo.hpp"

namespace mqttws {

// --device-keys: `<device id> <secret> [required|optional]` per line (`#` comments). The secret
// is the key's bytes as written (at least 16 characters); `optional` lets the device send
// unsigned frames too (signed ones are still verified).
class device_keys {
  public:
    struct key {
        std::string secret;
        bool required = true;
    };
    static std::variant<device_keys, std::vector<line_error>> parse(std::string_view text);
    const key* find(const std::string& device_id) const;
    std::size_t size() const { return keys_.size(); }

  private:
    std::unordered_map<std::string, key> keys_;
};

// A frame's signature: the bytes it covers and the signature itself (base64url).
struct frame_signature {
    std::string signed_bytes;
    std::string signature;
};
// Splits a frame whose last member is `"sig":"<base64url>"`; nullopt when it has none there.
std::optional<frame_signature> split_signature(std::string_view frame);

// HMAC-SHA256(secret, signed_bytes) == base64url-decoded signature, in constant time.
bool signature_valid(std::string_view secret, const frame_signature& s);

// The nonces seen per device within the replay window.
class replay_guard {
  public:
    explicit replay_guard(std::int64_t window_ms = 30000, std::size_t max_nonces_per_device = 4096)
        : window_ms_(window_ms), max_nonces_(max_nonces_per_device) {}
    // True (and remembered) when `ts` is within the window of `now_ms` and `nonce` is new.
    bool fresh(const std::string& device, std::int64_t ts, const std::string& nonce,
               std::int64_t now_ms);
    // Forgets what is older than the window (call now and then).
    void expire(std::int64_t now_ms);
    std::size_t remembered() const;

  private:
    struct seen {
        fifo<std::pair<std::int64_t, std::string>> order;  // (ts, nonce), oldest first
        std::unordered_set<std::string> nonces;
        std::int64_t floor_ts = INT64_MIN;  // frames not newer than this are refused
    };
    void forget_oldest(seen& s);

    std::int64_t window_ms_;
    std::size_t max_nonces_;
    std::unordered_map<std::string, seen> devices_;
};

// A nonce as frames carry it: 8 to 64 characters of A-Z a-z 0-9 - _.
bool valid_nonce(std::string_view nonce);

}  // namespace mqttws
