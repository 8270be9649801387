// frame_signature: device keys, the signed bytes of a frame, HMAC verification against test
// vectors made with the openssl and python3 command lines, and the replay window.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "core/frame_signature.hpp"

using mqttws::device_keys;
using mqttws::frame_signature;
using mqttws::line_error;
using mqttws::replay_guard;
using mqttws::signature_valid;
using mqttws::split_signature;

namespace {

// Test vectors (docs/protocol.md, "Signed frames"): the signature of each frame under the secret
// "device-secret-0123456789", computed with
//   printf '%s' "$FRAME" | openssl dgst -sha256 -hmac 'device-secret-0123456789' -binary |
//     base64 | tr '+/' '-_' | tr -d '='
// and, for the first, the same with python3's hmac module.
constexpr std::string_view secret = "device-secret-0123456789";
constexpr std::string_view status_frame =
    R"({"type":"status","deviceId":"sensor-001","temperature":21.5,"ts":1764842400000,)"
    R"("nonce":"k3J9x1aQ"})";
constexpr std::string_view status_sig = "_JM_A4u-5q2DeWmvSsJ6VyVKqQkm3nqfjtQyHa9ZESo";
constexpr std::string_view publish_frame =
    R"({"type":"publish","topic":"devices/sensor-001/telemetry","payload":{"v":1},"qos":1,)"
    R"("msgid":"p1","ts":1764842400000,"nonce":"n0nce-0001"})";
constexpr std::string_view publish_sig = "eEv97I-fSCqRyyUCgOOJEKB7htRy7UanVGUvDAYyaFg";

// The frame as sent: the signature appended as the last member.
std::string with_sig(std::string_view frame, std::string_view sig) {
    std::string out(frame.substr(0, frame.size() - 1));
    return out + R"(,"sig":")" + std::string(sig) + "\"}";
}

}  // namespace

TEST_CASE("frame_signature: the signed bytes are the frame without its last sig member") {
    const auto s = split_signature(with_sig(status_frame, status_sig));
    REQUIRE(s);
    CHECK(s->signed_bytes == status_frame);
    CHECK(s->signature == status_sig);
    // Trailing whitespace after the frame is allowed.
    CHECK(split_signature(with_sig(status_frame, status_sig) + " \n"));
    // Not the last member, not a string of base64url, or not at the top level: no signature.
    CHECK_FALSE(split_signature(status_frame));
    CHECK_FALSE(split_signature(R"({"sig":"abc","type":"status"})"));
    CHECK_FALSE(split_signature(R"({"type":"status","sig":"a+b/c="})"));
    CHECK_FALSE(split_signature(R"({"type":"status","data":{"x":1,"sig":"abc"}})"));
    CHECK_FALSE(split_signature(R"({"type":"status","sig":""})"));
}

TEST_CASE("frame_signature: verifies the test vectors, refuses any change") {
    for (const auto& [frame, sig] :
         {std::pair{status_frame, status_sig}, std::pair{publish_frame, publish_sig}}) {
        const auto s = split_signature(with_sig(frame, sig));
        REQUIRE(s);
        CHECK(signature_valid(secret, *s));
        CHECK_FALSE(signature_valid("device-secret-0123456780", *s));
        frame_signature changed = *s;
        changed.signed_bytes[changed.signed_bytes.find("1764842400000") + 12] = '1';
        CHECK_FALSE(signature_valid(secret, changed));
        frame_signature short_sig = *s;
        short_sig.signature.pop_back();
        CHECK_FALSE(signature_valid(secret, short_sig));
    }
}

TEST_CASE("device_keys: id, secret, policy; errors name their lines") {
    const auto parsed = device_keys::parse(
        "# devices\n"
        "sensor-001 device-secret-0123456789\n"
        "plc-101 another-secret-long-enough optional\n");
    REQUIRE(std::holds_alternative<device_keys>(parsed));
    const auto& keys = std::get<device_keys>(parsed);
    REQUIRE(keys.find("sensor-001"));
    CHECK(keys.find("sensor-001")->secret == "device-secret-0123456789");
    CHECK(keys.find("sensor-001")->required);
    CHECK_FALSE(keys.find("plc-101")->required);
    CHECK_FALSE(keys.find("other"));

    const auto bad = device_keys::parse(
        "a short\nb long-enough-secret maybe\nc\nd x-secret-16-chars!! required extra\ne "
        "0123456789abcdef\ne 0123456789abcdef\n");
    REQUIRE(std::holds_alternative<std::vector<line_error>>(bad));
    const auto& errors = std::get<std::vector<line_error>>(bad);
    REQUIRE(errors.size() == 5);
    CHECK(errors[0].line == 1);
    CHECK(errors[1].line == 2);
    CHECK(errors[2].line == 3);
    CHECK(errors[3].line == 4);
    CHECK(errors[4].line == 6);
}

TEST_CASE("replay_guard: the window, seen nonces, and a bounded memory") {
    replay_guard g(30'000, 3);
    const std::int64_t now = 1'764'842'400'000;
    CHECK(g.fresh("d", now, "nonce-001", now));
    CHECK_FALSE(g.fresh("d", now, "nonce-001", now));           // seen
    CHECK(g.fresh("other", now, "nonce-001", now));             // per device
    CHECK_FALSE(g.fresh("d", now - 30'001, "nonce-002", now));  // too old
    CHECK_FALSE(g.fresh("d", now + 30'001, "nonce-002", now));  // from the future
    CHECK(g.fresh("d", now - 30'000, "nonce-002", now));
    CHECK(g.fresh("d", now + 1, "nonce-003", now));
    // A fourth nonce within the window: the oldest is forgotten, and frames not newer than it
    // are refused from now on (they could not be told from replays).
    CHECK(g.fresh("d", now + 2, "nonce-004", now));
    CHECK_FALSE(g.fresh("d", now - 1, "nonce-005", now));
    CHECK(g.fresh("d", now + 3, "nonce-005", now));
    CHECK(g.remembered() <= 3 + 1);
    // Past the window everything is forgotten.
    g.expire(now + 120'000);
    CHECK(g.remembered() == 0);
}
