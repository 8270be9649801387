// Unit tests for signed device frames in core/engine (--device-keys): unsigned frames of a
// device whose key is required are refused, signed ones are published, replays and stale ones
// are refused, and an optional key lets unsigned frames through but still checks signed ones.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "core/base64.hpp"
#include "core/engine.hpp"
#include "engine_fixture.hpp"
#include "token_signing.hpp"

using mqttws::test::engine_fixture;
using mqttws::test::frame_list;

namespace {

constexpr std::string_view device_secret = "device-secret-0123456789";

struct signing_fixture : engine_fixture {
    signing_fixture() {
        auto keys = mqttws::device_keys::parse(
            "sensor-001 device-secret-0123456789\n"
            "gateway-1 gateway-secret-0123456 optional\n");
        REQUIRE(std::holds_alternative<mqttws::device_keys>(keys));
        auto policy = std::make_shared<mqttws::security_policy>();
        policy->signing_keys = std::get<mqttws::device_keys>(std::move(keys));
        mqttws::action_list ignored;
        eng.set_security(policy, ignored);
        upstream_connected();
    }
    // `frame` (a JSON object text) with ts, nonce and its signature under `secret`.
    std::string signed_frame(std::string frame, const std::string& nonce,
                             std::int64_t ts_offset_ms = 0,
                             std::string_view secret = device_secret) {
        frame.pop_back();  // the closing brace
        frame +=
            R"(,"ts":)" + std::to_string(env.wall + ts_offset_ms) + R"(,"nonce":")" + nonce + "\"}";
        const std::string sig = mqttws::base64url::encode(mqttws::test::hmac_sha256(secret, frame));
        frame.pop_back();
        return frame + R"(,"sig":")" + sig + "\"}";
    }
};

constexpr std::string_view status =
    R"({"type":"status","deviceId":"sensor-001","t":21.5,"msgid":"s"})";

}  // namespace

TEST_CASE("engine signatures: a device whose key is required must sign") {
    signing_fixture f;
    auto d = f.device(1, "sensor-001");
    d.send(status);
    frame_list got = d.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].type() == "ack");
    CHECK(got[0].str("code") == "bad_signature");
    CHECK(f.publishes().empty());
    CHECK(f.stats().signatures_refused == 1);

    d.send(f.signed_frame(std::string(status), "nonce-0001"));
    CHECK(f.publishes().size() == 1);
    CHECK(d.take().empty());  // acked when the broker confirms
}

TEST_CASE("engine signatures: bad signatures, replays and stale frames are refused") {
    signing_fixture f;
    auto d = f.device(1, "sensor-001");
    const std::string good = f.signed_frame(std::string(status), "nonce-0001");
    d.send(good);
    CHECK(f.publishes().size() == 1);

    d.send(good);  // the same frame again
    CHECK(d.take().back().str("code") == "replayed");
    d.send(f.signed_frame(std::string(status), "nonce-0002", -31'000));
    CHECK(d.take().back().str("code") == "replayed");
    d.send(f.signed_frame(std::string(status), "nonce-0003", 0, "not-the-device-secret"));
    CHECK(d.take().back().str("code") == "bad_signature");
    std::string tampered = f.signed_frame(std::string(status), "nonce-0004");
    tampered.replace(tampered.find("21.5"), 4, "99.9");
    d.send(tampered);
    CHECK(d.take().back().str("code") == "bad_signature");
    d.send(f.signed_frame(std::string(status), "short"));  // nonce under 8 characters
    CHECK(d.take().back().str("code") == "bad_signature");
    CHECK(f.publishes().size() == 1);
    CHECK(f.stats().replays_refused == 2);
    CHECK(f.stats().signatures_refused == 3);
}

TEST_CASE("engine signatures: publishes and batches are signed as whole frames") {
    signing_fixture f;
    auto d = f.device(1, "sensor-001");
    d.send(f.signed_frame(R"({"type":"publish","topic":"t/a","payload":1})", "nonce-0001"));
    d.send(f.signed_frame(
        R"({"type":"batch","messages":[{"topic":"t/b","payload":2},{"topic":"t/c","payload":3}]})",
        "nonce-0002"));
    CHECK(f.publishes().size() == 3);
    // A batch refused whole names it by its own msgid.
    d.take();
    d.send(R"({"type":"batch","msgid":"b7","messages":[{"topic":"t/e","payload":4}]})");
    {
        const auto got = d.take();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("type") == "error");
        CHECK(got[0].str("code") == "bad_signature");
        CHECK(got[0].str("msgid") == "b7");
    }
    CHECK(f.publishes().size() == 3);
    // A binary frame cannot carry a signature.
    d.take();
    d.send_binary(std::string("\x01\x01\x00\x00\x00\x09\x00\x03t/d", 11));
    {
        const auto got = d.take();
        REQUIRE(got.size() == 1);
        CHECK(got[0].type() == "ack");
        CHECK(got[0].str("code") == "bad_signature");
        CHECK(got[0].num("msgid") == 9);
    }
    CHECK(f.publishes().size() == 3);
    CHECK(f.stats().signatures_refused == 2);
}

TEST_CASE("engine signatures: an optional key lets unsigned frames through, checks signed ones") {
    signing_fixture f;
    auto g = f.device(1, "gateway-1");
    g.send(R"({"type":"status","deviceId":"gateway-1","t":1})");
    CHECK(f.publishes().size() == 1);
    g.send(f.signed_frame(R"({"type":"status","deviceId":"gateway-1","t":2})", "nonce-0001", 0,
                          "wrong-secret-0123456789"));
    CHECK(g.take().back().str("code") == "bad_signature");
    CHECK(f.publishes().size() == 1);
    // A device without a key is not asked for signatures at all.
    auto other = f.device(2, "sensor-777");
    other.send(R"({"type":"status","deviceId":"sensor-777","t":1})");
    CHECK(f.publishes().size() == 2);
}
