// Unit tests for core/text: UTF-8 validation, the JSON nesting pre-check, and JSON string escaping
// (as the reply encoders write it).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "core/error.hpp"
#include "core/replies.hpp"
#include "core/text.hpp"
#include "engine_fixture.hpp"
#include "test_helpers.hpp"

using namespace mqttws;
using namespace std::string_literals;
using mqttws::test::json_frame;
using mqttws::test::nested_arrays;

TEST_CASE("json_nesting_exceeds") {
    CHECK_FALSE(json_nesting_exceeds("", 0));
    CHECK_FALSE(json_nesting_exceeds("1", 0));
    CHECK(json_nesting_exceeds("{}", 0));
    CHECK_FALSE(json_nesting_exceeds("{}", 1));
    CHECK(json_nesting_exceeds("[[[]]]", 2));
    CHECK_FALSE(json_nesting_exceeds("[[[]]]", 3));
    CHECK_FALSE(json_nesting_exceeds("[[]][[]][[]]", 2));  // depth, not count
    CHECK(json_nesting_exceeds(R"({"a":{"b":[1]}})", 2));
    CHECK_FALSE(json_nesting_exceeds(R"({"a":{"b":[1]}})", 3));
    // Brackets inside strings do not count ...
    CHECK_FALSE(json_nesting_exceeds(R"(["[[[[{{{{"])", 1));
    CHECK_FALSE(json_nesting_exceeds(R"({"[[[[":"{{{{"})", 1));
    // ... also after an escaped quote, which does not end the string ...
    CHECK_FALSE(json_nesting_exceeds(R"(["\"[[[[["])", 1));
    CHECK_FALSE(json_nesting_exceeds(R"(["\\\"[[[["])", 1));
    // ... but an escaped backslash does not escape the closing quote.
    CHECK(json_nesting_exceeds(R"(["\\",[[[1]]]])", 3));
    CHECK_FALSE(json_nesting_exceeds(R"(["\\",[[[1]]]])", 4));
    // Stray closers cannot buy depth.
    CHECK(json_nesting_exceeds("]]]]]][[", 1));
    CHECK(json_nesting_exceeds("}}}}[[[", 2));
    // Unbalanced and huge.
    CHECK(json_nesting_exceeds(std::string(10000, '['), 32));
    CHECK(json_nesting_exceeds(nested_arrays(33), 32));
    CHECK_FALSE(json_nesting_exceeds(nested_arrays(32), 32));
}

TEST_CASE("is_valid_utf8 (any code point, NUL allowed)") {
    for (const std::string& ok :
         {""s, "ascii"s, "\0"s, "a\0b"s, "\x7F"s, "\xC2\x80"s, "\xC2\x85"s, "\xDF\xBF"s,
          "\xE0\xA0\x80"s, "\xED\x9F\xBF"s, "\xEE\x80\x80"s, "\xEF\xBF\xBF"s, "\xEF\xB7\x90"s,
          "\xF0\x90\x80\x80"s, "\xF4\x8F\xBF\xBF"s, "caf\xC3\xA9 \xF0\x9F\x98\x80"s}) {
        INFO("bytes " << ok.size());
        CHECK(is_valid_utf8(ok));
    }
    for (const std::string& bad : {"\x80"s,
                                   "\xBF"s,
                                   "\xC0\x80"s,
                                   "\xC1\xBF"s,
                                   "\xC3"s,
                                   "\xC3 "s,
                                   "\xE0\x80\x80"s,
                                   "\xE0\x9F\xBF"s,
                                   "\xE2\x82"s,
                                   "\xED\xA0\x80"s,
                                   "\xED\xBF\xBF"s,
                                   "\xF0\x80\x80\x80"s,
                                   "\xF0\x8F\xBF\xBF"s,
                                   "\xF0\x9F\x98"s,
                                   "\xF4\x90\x80\x80"s,
                                   "\xF5\x80\x80\x80"s,
                                   "\xF8\x88\x80\x80\x80"s,
                                   "\xFE"s,
                                   "\xFF"s,
                                   "ok\xC3"s,
                                   "\xC3\xA9\xA9"s}) {
        INFO("bytes " << bad.size());
        CHECK_FALSE(is_valid_utf8(bad));
    }
}

TEST_CASE("encoders escape strings as JSON") {
    std::string nasty = "q\" b\\ s/ nl\n cr\r tab\t bs\b ff\f";
    for (int c = 0; c < 0x20; ++c)
        nasty += static_cast<char>(c);
    nasty += "\x7F caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x80\xA8";
    const std::string out = encode_error(errc::bad_request, nasty, {}, nasty);
    const auto doc = json_frame(out);
    CHECK(doc.str("message") == nasty);
    CHECK(doc.str("topic") == nasty);
    CHECK(out.find(R"(q\")") != std::string::npos);
    CHECK(out.find(R"(b\\ )") != std::string::npos);
    CHECK(out.find(R"(\u0001)") != std::string::npos);
    CHECK(out.find(R"(\u001f)") != std::string::npos);
    CHECK(out.find(R"(\u0000)") != std::string::npos);
    CHECK(out.find(R"(nl\n)") != std::string::npos);
    // Non-ASCII UTF-8 passes through unescaped.
    CHECK(out.find("caf\xC3\xA9") != std::string::npos);
    CHECK(std::none_of(out.begin(), out.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x20; }));
}
