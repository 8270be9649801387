// Unit tests for core/base64 (RFC 4648 §4, standard alphabet, padded, strict decoding).
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>

#include "core/base64.hpp"

namespace base64 = mqttws::base64;
using namespace std::string_literals;

TEST_CASE("base64: RFC 4648 §10 test vectors") {
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (const auto& vector : vectors) {
        const char* const plain = vector.first;
        const char* const encoded = vector.second;
        INFO(plain);
        CHECK(base64::encode(plain) == encoded);
        const auto decoded = base64::decode(encoded);
        REQUIRE(decoded.has_value());
        CHECK(*decoded == plain);
    }
}

TEST_CASE("base64: binary bytes, both ends of the alphabet") {
    CHECK(base64::encode("\x00\x00\x00"s) == "AAAA");
    CHECK(base64::encode("\xFF\xFF\xFF"s) == "////");
    CHECK(base64::encode("\xFB\xEF\xBE"s) == "++++");
    CHECK(base64::encode("\x00"s) == "AA==");
    CHECK(base64::encode("\xFF"s) == "/w==");
    CHECK(base64::encode("\xFF\xFF"s) == "//8=");
    CHECK(base64::encode("\x00\x10\x83\x10\x51\x87\x20\x92\x8b\x30\xd3\x8f\x41\x14\x93\x51\x55\x97"
                         "\x61\x96\x9b\x71\xd7\x9f\x82\x18\xa3\x92\x59\xa7\xa2\x9a\xab\xb2\xdb\xaf"
                         "\xc3\x1c\xb3\xd3\x5d\xb7\xe3\x9e\xbb\xf3\xdf\xbf"s) ==
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    const auto d = base64::decode("AP8A");
    REQUIRE(d.has_value());
    CHECK(*d == "\x00\xFF\x00"s);
    CHECK(d->size() == 3);
}

TEST_CASE("base64: encode_append appends") {
    std::string out = "prefix:";
    base64::encode_append("foo", out);
    CHECK(out == "prefix:Zm9v");
    base64::encode_append("f", out);
    CHECK(out == "prefix:Zm9vZg==");
    base64::encode_append("", out);
    CHECK(out == "prefix:Zm9vZg==");
}

TEST_CASE("base64: round trip of every length and byte value") {
    std::mt19937 rng(4648);
    for (std::size_t len = 0; len < 200; ++len) {
        std::string bytes(len, '\0');
        for (auto& b : bytes)
            b = static_cast<char>(rng() & 0xFF);
        const std::string encoded = base64::encode(bytes);
        CHECK(encoded.size() == (len + 2) / 3 * 4);
        const auto decoded = base64::decode(encoded);
        REQUIRE(decoded.has_value());
        CHECK(*decoded == bytes);
    }
    std::string all;
    for (int b = 0; b < 256; ++b)
        all += static_cast<char>(b);
    CHECK(base64::decode(base64::encode(all)) == all);
}

TEST_CASE("base64: decode refuses what is not strict padded base64") {
    for (const char* text : {
             "Zg",         // unpadded
             "Zg=",        // short padding
             "Zm9",        // length not a multiple of 4
             "Z",          //
             "Zm9vY",      //
             "Zg===",      // too much padding
             "Z===",       // padding in the second place
             "====",       // padding only
             "=Zg=",       // padding first
             "Zg==Zg==",   // padding before the last quantum
             "Zm8=Zm9v",   //
             "Z=g=",       // data after padding
             "Zm=v",       //
             "Zm9v\n",     // whitespace is not accepted
             "Zm9 v",      //
             " Zm9v",      //
             "Zm9v Zm9v",  //
             "Zm9-",       // base64url alphabet
             "Zm9_",       //
             "Zm9.",       //
             "Zm9\x80",    // non-ASCII
         }) {
        INFO(text);
        CHECK_FALSE(base64::decode(text).has_value());
    }
    CHECK_FALSE(base64::decode("Zm\0v"s).has_value());  // NUL inside
}

TEST_CASE("base64: decode refuses non-zero padding bits (RFC 4648 §3.5)") {
    // "Zg==" is the only encoding of "f"; "Zh==" carries stray bits in the padding. Accepting it
    // would make two texts decode to the same bytes, so decode(x) would not re-encode to x.
    CHECK(base64::decode("Zg==") == "f");
    CHECK_FALSE(base64::decode("Zh==").has_value());
    CHECK_FALSE(base64::decode("Zv==").has_value());
    CHECK(base64::decode("Zm8=") == "fo");
    CHECK_FALSE(base64::decode("Zm9=").has_value());
    CHECK_FALSE(base64::decode("Zm/=").has_value());
    CHECK(base64::decode("AA==") == "\x00"s);
    CHECK_FALSE(base64::decode("AB==").has_value());
    CHECK(base64::decode("AAA=") == "\x00\x00"s);
    CHECK_FALSE(base64::decode("AAB=").has_value());
}

TEST_CASE("base64: whatever decodes re-encodes to the same text") {
    // Every last quantum with 0, 1 or 2 padding characters (the first character, which never
    // meets padding, from a sample).
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const std::string firsts = "AZaz09+/";
    std::size_t accepted = 0;
    std::string first_bad;
    for (const char a : firsts) {
        for (const char b : alphabet) {
            for (const char c : alphabet + "=") {
                for (const char d : alphabet + "=") {
                    const std::string text{a, b, c, d};
                    const auto decoded = base64::decode(text);
                    if (!decoded) continue;
                    ++accepted;
                    if (base64::encode(*decoded) != text && first_bad.empty()) first_bad = text;
                }
            }
        }
    }
    // Per first character: 64^3 quanta without padding; "xyz=" needs the low 2 bits of z
    // clear (16 choices); "xy==" needs the low 4 bits of y clear (4 choices).
    CHECK(accepted == firsts.size() * (64u * 64 * 64 + 64u * 16 + 4u));
    CHECK_MESSAGE(first_bad.empty(), first_bad << " decodes but does not re-encode to itself");
}
