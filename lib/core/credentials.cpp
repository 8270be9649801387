#include "core/credentials.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <memory>
#include <optional>

#include "core/base64.hpp"

namespace mqttws {
namespace {

using config_text::trim;

constexpr std::uint32_t mosquitto_default_iterations = 101;  // PW_DEFAULT_ITERATIONS
constexpr std::size_t max_username_bytes = 65535;            // as Mosquitto

std::string quote(std::string_view s) {
    constexpr std::size_t max_bytes = 80;
    std::string out = "'";
    for (const char c : s.substr(0, max_bytes)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7F) ? '?' : c;
    }
    if (s.size() > max_bytes) out += "...";
    out += '\'';
    return out;
}

// Splits "a$b$c" at '$'.
std::vector<std::string_view> split_dollar(std::string_view s) {
    std::vector<std::string_view> parts;
    for (;;) {
        const std::size_t d = s.find('$');
        parts.push_back(s.substr(0, d));
        if (d == std::string_view::npos) return parts;
        s.remove_prefix(d + 1);
    }
}

template <std::size_t N>
bool decode_exact(std::string_view text, std::array<unsigned char, N>& out) {
    const std::optional<std::string> bytes = base64::decode(text);
    if (!bytes || bytes->size() != N) return false;
    std::copy(bytes->begin(), bytes->end(), out.begin());
    return true;
}

// Parses the hash field; an error message when it is not one Mosquitto would accept.
std::optional<std::string> parse_hash(std::string_view field, const password_file_limits& limits,
                                      password_entry& entry) {
    if (field.empty() || field.front() != '$') {
        return std::string("the password is not hashed (run 'mosquitto_passwd -U' on the file)");
    }
    const std::vector<std::string_view> parts = split_dollar(field.substr(1));
    std::size_t next = 1;
    if (parts[0] == "7") {
        entry.kind = password_entry::scheme::sha512_pbkdf2;
        if (parts.size() != 4) {
            return std::string("a '$7$' hash must look like $7$<iterations>$<salt>$<hash>");
        }
        const std::string_view digits = parts[1];
        std::uint64_t n = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
        if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || n < 1) {
            return "the iteration count " + quote(digits) + " is not a positive number";
        }
        if (n > limits.max_iterations) {
            return "the iteration count " + std::to_string(n) + " is above the limit of " +
                   std::to_string(limits.max_iterations);
        }
        entry.iterations = static_cast<std::uint32_t>(n);
        next = 2;
    } else if (parts[0] == "6") {
        entry.kind = password_entry::scheme::sha512;
        if (parts.size() != 3) return std::string("a '$6$' hash must look like $6$<salt>$<hash>");
    } else {
        return "unknown hash type " + quote("$" + std::string(parts[0]) + "$") +
               " (Mosquitto writes $6$ and $7$)";
    }
    if (!decode_exact(parts[next], entry.salt)) {
        return std::string("the salt is not 12 bytes of base64");
    }
    if (!decode_exact(parts[next + 1], entry.hash)) {
        return std::string("the hash is not 64 bytes of base64");
    }
    return std::nullopt;
}

}  // namespace

std::array<unsigned char, 64> password_hash(const password_entry& entry,
                                            std::string_view password) {
    std::array<unsigned char, 64> out{};
    // OpenSSL takes int lengths; nobody has a 2 GiB password, so such input just fails to match.
    if (password.size() > static_cast<std::size_t>(INT_MAX)) return out;
    if (entry.kind == password_entry::scheme::sha512_pbkdf2) {
        PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), entry.salt.data(),
                          static_cast<int>(entry.salt.size()), static_cast<int>(entry.iterations),
                          EVP_sha512(), static_cast<int>(out.size()), out.data());
    } else {
        const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                          &EVP_MD_CTX_free);
        unsigned int len = 0;
        if (ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha512(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx.get(), password.data(), password.size()) == 1 &&
            EVP_DigestUpdate(ctx.get(), entry.salt.data(), entry.salt.size()) == 1) {
            EVP_DigestFinal_ex(ctx.get(), out.data(), &len);
        }
    }
    return out;
}

std::variant<password_file, std::vector<line_error>> password_file::parse(
    std::string_view text, const password_file_limits& limits) {
    password_file result;
    std::vector<line_error> errors;
    std::map<std::string, std::size_t, std::less<>> first_line;
    bool have_dummy = false;

    config_text::for_each_line(text, [&](std::size_t number, std::string_view raw) {
        const std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') return;
        const auto fail = [&](std::string message) {
            errors.push_back(line_error{number, std::move(message)});
        };
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) return fail("expected 'username:hash'");
        const std::string_view username = trim(line.substr(0, colon));
        const std::string_view hash = trim(line.substr(colon + 1));
        if (username.empty()) return fail("the username is empty");
        if (username.size() > max_username_bytes) return fail("the username is too long");
        if (hash.empty()) return fail("user " + quote(username) + " has no password hash");
        if (hash.find(':') != std::string_view::npos) {
            return fail("user " + quote(username) + ": a hash cannot contain ':'");
        }
        password_entry entry;
        entry.line = number;
        if (auto problem = parse_hash(hash, limits, entry)) {
            return fail("user " + quote(username) + ": " + *problem);
        }
        if (const auto it = first_line.find(username); it != first_line.end()) {
            return fail("user " + quote(username) + " is already defined on line " +
                        std::to_string(it->second));
        }
        first_line.emplace(std::string(username), number);
        if (!have_dummy) {
            // Unknown users are hashed like the first user, so they take as long.
            result.dummy_.kind = entry.kind;
            result.dummy_.iterations = entry.iterations;
            have_dummy = true;
        }
        result.users_.emplace(std::string(username), entry);
    });

    if (!errors.empty()) return errors;
    if (!have_dummy) {
        result.dummy_.kind = password_entry::scheme::sha512_pbkdf2;
        result.dummy_.iterations = mosquitto_default_iterations;
    }
    // A fixed salt and a hash no password has: the dummy never matches.
    result.dummy_.salt.fill(0x5A);
    result.dummy_.hash.fill(0);
    return result;
}

password_file::result password_file::verify(std::string_view username,
                                            std::string_view password) const {
    const auto it = users_.find(username);
    const password_entry& entry = it != users_.end() ? it->second : dummy_;
    const std::array<unsigned char, 64> computed = password_hash(entry, password);
    const bool equal = CRYPTO_memcmp(computed.data(), entry.hash.data(), computed.size()) == 0;
    if (it == users_.end()) return result::unknown_user;
    return equal ? result::ok : result::wrong_password;
}

}  // namespace mqttws
