// Username/password checks against a Mosquitto password file (the output of `mosquitto_passwd`).
//
// Each line is `username:hash`, where the hash is one of Mosquitto 2.0's two formats
// (src/security_default.c, apps/mosquitto_passwd):
//   $7$<iterations>$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512 (the default since 2.0,
//                                                  101 iterations unless `mosquitto_passwd -I`)
//   $6$<base64 salt>$<base64 hash>                 SHA-512 of password || salt (1.6 and earlier)
// The salt is 12 bytes and the hash 64 bytes, both in padded standard base64, as Mosquitto
// requires. Lines starting with `#` and blank lines are skipped; blanks around the username and
// the hash are ignored. Where Mosquitto logs a bad line and drops that user, `parse()` refuses
// the whole file and lists every bad line, so a typo cannot silently lock a user out. Plain-text
// passwords (no `$6$`/`$7$`), duplicate usernames and absurd iteration counts are refused.
//
// `verify()` compares in constant time (CRYPTO_memcmp). For an unknown user it still derives a
// hash (with the first PBKDF2 entry's parameters, or Mosquitto's defaults) so that the time
// taken does not reveal which usernames exist.
//
// Thread safety: a `password_file` is immutable after parse(); const member functions are safe
// to call from several threads at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config_text.hpp"

namespace mqttws {

struct password_entry {
    enum class scheme { sha512 = 6, sha512_pbkdf2 = 7 };
    scheme kind = scheme::sha512_pbkdf2;
    std::uint32_t iterations = 0;  // PBKDF2 only
    std::array<unsigned char, 12> salt{};
    std::array<unsigned char, 64> hash{};
    std::size_t line = 0;
};

struct password_file_limits {
    // PBKDF2 iteration counts above this are refused: each login costs that many HMACs.
    std::uint32_t max_iterations = 10'000'000;
};

class password_file {
  public:
    enum class result { ok, unknown_user, wrong_password };

    static std::variant<password_file, std::vector<line_error>> parse(
        std::string_view text, const password_file_limits& limits = {});

    // Every failure is a failed login for the client; the two kinds are for the server's log.
    result verify(std::string_view username, std::string_view password) const;

    std::size_t size() const { return users_.size(); }

  private:
    std::map<std::string, password_entry, std::less<>> users_;
    password_entry dummy_;  // hashed for unknown users, to take the same time
};

// The hash a `password_entry` stores for `password` (64 bytes). Exposed for tests and tools.
std::array<unsigned char, 64> password_hash(const password_entry& entry, std::string_view password);

}  // namespace mqttws
