// Unit tests for core/credentials: parsing mosquitto_passwd files ($7$ PBKDF2 and $6$ SHA-512
// lines) and verifying passwords against them.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <variant>

#include "core/base64.hpp"
#include "core/credentials.hpp"
#include "test_helpers.hpp"

using mqttws::line_error;
using mqttws::password_file;
using mqttws::test::contains;
using mqttws::test::parse_errors;
using result = mqttws::password_file::result;

namespace {

// Real output of Mosquitto 2.0.11's tool (Debian 12 package 2.0.11-1.2+deb12u2), made with:
//   mosquitto_passwd -c -b pw alice 'correct horse'
//   mosquitto_passwd -b pw bob hunter2
//   mosquitto_passwd -b pw 'carol smith' 'pässwörd:$x'
//   mosquitto_passwd -H sha512 -b pw dave legacy-pass
//   mosquitto_passwd -H sha512 -b pw erin ''
//   mosquitto_passwd -b pw frank ''
//   mosquitto_passwd -I 5000 -b pw gina iter-test
// ($7$ = the default PBKDF2-SHA512 with 101 iterations; $6$ = -H sha512, salted SHA-512.)
constexpr std::string_view mosquitto_passwd_output =
    "alice:$7$101$ceVkyRjjJ8oTa6ww$Z3P23WnrWbnkD2b+JgH5xk5hPrV+CdiwVj4OgwrzpIoY/"
    "jkccUYVzply2GNEnJOzm6YL+ICtHtiWuKLIfBtwVw==\n"
    "bob:$7$101$7TJU3kLTbYLXbNac$7R5b7FXX5ZkMkJs23jVP2mYLleOJGeql73vMC50bM3aJ2OQsUeq5xKnkInp0RtJZ/"
    "ukuUwdUcXQkDHbhT6ORYQ==\n"
    "carol smith:$7$101$jVg0vVmGZR+YHugH$neFB2bTcXMQXQm+L93zofAekwv+du1S3okjEmX3ys/"
    "kTkY+SnrKXzmeQ9DnO4G4WvpInDQG3Aitb4T4K6q+4KA==\n"
    "dave:$6$QFndooJpdjMPMZ/w$rk+JwatwTUjRbY6ujDvW0MT6B5Zj2bh0BgW1n/"
    "uYTqMmDMRN8OI2pMQeNQuvlghmXVUhXs0OqHEJ/Y4NJ24tGw==\n"
    "erin:$6$OedPdtx/84cVYpBI$BDo4qy2l2fv5ludzNylNQ6BrHlF6+gYMGjQGF920Mp0KN+b+o/"
    "1bDG0dtSrA7S7GVVI4uQM1pjIhdEAPAZw5mw==\n"
    "frank:$7$101$hrPJmfoobURvjtYt$9UgLi0FpCutiuR6QeMhp2jjNuwS3Oa5knBj6ChZar53LBdrhYFqqP/"
    "T4P13H00lh4/e5r0hdTGJmnUuWmC61CQ==\n"
    "gina:$7$5000$ZMbq5nsWSvkXNuqO$s5drlFtBhINpK1l8kGC4cumy4Mcc07WqGHnv260YQtGJzTb/l6/"
    "NS39dEkHDks7cchylosVVF0201Kq78nc89w==\n";

password_file parse_ok(std::string_view text) {
    auto parsed = password_file::parse(text);
    if (auto* errors = std::get_if<std::vector<line_error>>(&parsed)) {
        for (const auto& e : *errors)
            FAIL_CHECK(e.to_string());
        return std::get<password_file>(password_file::parse(""));
    }
    return std::get<password_file>(std::move(parsed));
}

// A `$6$` line computed independently with OpenSSL's one-shot digest: sha512(password || salt).
std::string sha512_line(std::string_view user, std::string_view password, std::string_view salt) {
    std::string input(password);
    input += salt;
    unsigned char digest[64];
    unsigned int len = 0;
    REQUIRE(EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha512(), nullptr) == 1);
    REQUIRE(len == 64);
    return std::string(user) + ":$6$" + mqttws::base64::encode(salt) + "$" +
           mqttws::base64::encode(std::string_view(reinterpret_cast<char*>(digest), len)) + "\n";
}

}  // namespace

TEST_CASE("credentials: verifies real mosquitto_passwd output ($7$ and $6$)") {
    const password_file pw = parse_ok(mosquitto_passwd_output);
    CHECK(pw.size() == 7);
    CHECK(pw.verify("alice", "correct horse") == result::ok);
    CHECK(pw.verify("bob", "hunter2") == result::ok);
    CHECK(pw.verify("carol smith", "p\xC3\xA4ssw\xC3\xB6rd:$x") == result::ok);
    CHECK(pw.verify("dave", "legacy-pass") == result::ok);
    CHECK(pw.verify("erin", "") == result::ok);
    CHECK(pw.verify("frank", "") == result::ok);
    CHECK(pw.verify("gina", "iter-test") == result::ok);
}

TEST_CASE("credentials: wrong passwords and unknown users fail") {
    const password_file pw = parse_ok(mosquitto_passwd_output);
    CHECK(pw.verify("alice", "correct horse ") == result::wrong_password);
    CHECK(pw.verify("alice", "Correct horse") == result::wrong_password);
    CHECK(pw.verify("alice", "") == result::wrong_password);
    CHECK(pw.verify("bob", "correct horse") == result::wrong_password);  // alice's password
    CHECK(pw.verify("dave", "legacy-pas") == result::wrong_password);
    CHECK(pw.verify("erin", "x") == result::wrong_password);
    CHECK(pw.verify("frank", "x") == result::wrong_password);
    CHECK(pw.verify("gina", "iter-tesT") == result::wrong_password);
    CHECK(pw.verify("Alice", "correct horse") == result::unknown_user);  // case-sensitive
    CHECK(pw.verify("mallory", "hunter2") == result::unknown_user);
    CHECK(pw.verify("", "") == result::unknown_user);
}

TEST_CASE("credentials: $6$ lines computed with OpenSSL verify") {
    const std::string text =
        sha512_line("u1", "secret", "0123456789ab") + sha512_line("u2", "", "saltsaltsalt");
    const password_file pw = parse_ok(text);
    CHECK(pw.verify("u1", "secret") == result::ok);
    CHECK(pw.verify("u1", "secreT") == result::wrong_password);
    CHECK(pw.verify("u2", "") == result::ok);
}

TEST_CASE("credentials: comments, blank lines, CRLF and blanks around fields are ignored") {
    std::string line = sha512_line("u1", "pw", "0123456789ab");  // "u1:$6$...\n"
    line.pop_back();
    const std::string hash = line.substr(line.find(':') + 1);
    const std::string text =
        "# users of the test bench\r\n"
        "\r\n"
        "  u1  :  " +
        hash + "\t\r\n";
    const password_file pw = parse_ok(text);
    CHECK(pw.size() == 1);
    CHECK(pw.verify("u1", "pw") == result::ok);
    CHECK(pw.verify("  u1  ", "pw") == result::unknown_user);
}

TEST_CASE("credentials: parse errors carry line numbers, all of them") {
    const std::string good = sha512_line("ok", "pw", "0123456789ab");
    const std::string text = good +                                         // 1
                             "no colon here\n"                              // 2
                             ":$6$abc$def\n"                                // 3 empty username
                             "nohash:\n"                                    // 4
                             "plain:secret\n"                               // 5 not hashed
                             "md5:$1$abc$def\n"                             // 6 unknown type
                             "it0:$7$0$MDEyMzQ1Njc4OWFi$AAAA\n"             // 7 zero iterations
                             "itx:$7$10x$MDEyMzQ1Njc4OWFi$AAAA\n"           // 8 not a number
                             "short:$6$MDEyMzQ1Njc=$AAAA\n"                 // 9 salt of 8 bytes
                             "bad64:$6$MDEyMzQ1Njc4OWFi$!!!!\n"             // 10 hash not base64
                             "extra:$6$MDEyMzQ1Njc4OWFi$AAAA$AAAA\n"        // 11 too many fields
                             "ok:$6$MDEyMzQ1Njc4OWFi$AAAA\n"                // 12 (hash wrong too)
                             + good +                                       // 13 duplicate
                             "big:$7$99999999999$MDEyMzQ1Njc4OWFi$AAAA\n";  // 14 iterations
    const auto errors = parse_errors<password_file>(text);
    std::vector<std::size_t> lines;
    for (const auto& e : errors)
        lines.push_back(e.line);
    CHECK(lines == std::vector<std::size_t>{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
    REQUIRE(errors.size() == 13);
    CHECK(contains(errors[0].message, "username:hash"));
    CHECK(contains(errors[1].message, "username is empty"));
    CHECK(contains(errors[2].message, "no password hash"));
    CHECK(contains(errors[3].message, "mosquitto_passwd -U"));
    CHECK(contains(errors[4].message, "unknown hash type '$1$'"));
    CHECK(contains(errors[5].message, "not a positive number"));
    CHECK(contains(errors[6].message, "not a positive number"));
    CHECK(contains(errors[7].message, "salt is not 12 bytes"));
    CHECK(contains(errors[8].message, "hash is not 64 bytes"));
    CHECK(contains(errors[9].message, "must look like $6$<salt>$<hash>"));
    CHECK(contains(errors[10].message, "hash is not 64 bytes"));
    CHECK(errors[11].message == "user 'ok' is already defined on line 1");
    CHECK(contains(errors[12].message, "above the limit"));
}

TEST_CASE("credentials: the iteration limit is configurable") {
    const std::string line = std::string(
        mosquitto_passwd_output.substr(mosquitto_passwd_output.find("gina:")));  // 5000 iterations
    mqttws::password_file_limits limits;
    limits.max_iterations = 1000;
    CHECK(std::holds_alternative<std::vector<line_error>>(password_file::parse(line, limits)));
    limits.max_iterations = 5000;
    CHECK(std::holds_alternative<password_file>(password_file::parse(line, limits)));
}

TEST_CASE("credentials: an unknown user costs as much as a known one") {
    // One user with enough iterations that the PBKDF2 dominates; an unknown user must not be
    // answered in microseconds, or response times would reveal which usernames exist.
    mqttws::password_entry entry;
    entry.kind = mqttws::password_entry::scheme::sha512_pbkdf2;
    entry.iterations = 40000;
    entry.salt.fill(7);
    entry.hash = mqttws::password_hash(entry, "pw");
    const auto b64 = [](const auto& bytes) {
        return mqttws::base64::encode(
            std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    };
    const std::string text = "slow:$7$40000$" + b64(entry.salt) + "$" + b64(entry.hash) + "\n";
    const password_file pw = parse_ok(text);
    REQUIRE(pw.verify("slow", "pw") == result::ok);

    using clock = std::chrono::steady_clock;
    const auto fastest = [&](std::string_view user) {
        auto best = clock::duration::max();
        for (int i = 0; i < 3; ++i) {
            const auto start = clock::now();
            (void)pw.verify(user, "guess");
            best = std::min(best, clock::now() - start);
        }
        return best;
    };
    const auto known = fastest("slow");
    const auto unknown = fastest("nobody");
    CHECK(unknown * 4 > known);
}
