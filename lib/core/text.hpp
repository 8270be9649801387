// Text the bridge checks and writes: UTF-8, client ids, JSON string literals and numbers, and a
// cheap bound on JSON nesting. Shared by the wire protocol (requests, replies, message bodies),
// topics, logs, metrics and the audit trail.
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mqttws {

// Decodes UTF-8, calling visit(code point) for each character; false (and stops) at the first
// malformed sequence: a bad lead or continuation byte, a truncated, overlong or surrogate
// encoding, or a code point beyond U+10FFFF. `visit` returns false to reject a character.
template <class Visit>
bool for_each_code_point(std::string_view bytes, Visit&& visit) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const auto* const end = p + bytes.size();
    while (p < end) {
        if (*p < 0x80) {
            if (!visit(static_cast<std::uint32_t>(*p))) return false;
            ++p;
            continue;
        }
        int extra = 0;
        std::uint32_t cp = 0;
        if ((*p & 0xE0) == 0xC0) {
            extra = 1;
            cp = *p & 0x1Fu;
        } else if ((*p & 0xF0) == 0xE0) {
            extra = 2;
            cp = *p & 0x0Fu;
        } else if ((*p & 0xF8) == 0xF0) {
            extra = 3;
            cp = *p & 0x07u;
        } else {
            return false;  // a continuation byte, or 0xF8..0xFF, as a lead byte
        }
        if (end - p <= extra) return false;
        for (int i = 1; i <= extra; ++i) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3Fu);
        }
        static constexpr std::uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_for_length[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        if (!visit(cp)) return false;
        p += extra + 1;
    }
    return true;
}

// True when `bytes` is well-formed UTF-8 (any code point; NUL allowed).
bool is_valid_utf8(std::string_view bytes) noexcept;

// A client id: 1 to 128 bytes of UTF-8 without '/', '+', '#' or control characters (so that
// it can stand in a topic level, e.g. for the ACL's %c).
bool is_valid_client_id(std::string_view id) noexcept;

// True when nesting of arrays/objects in `json` goes deeper than `max_depth` (strings are
// skipped correctly). Cheap pre-check so that hostile input never reaches a parser's stack.
bool json_nesting_exceeds(std::string_view json, std::size_t max_depth) noexcept;

// `s` (UTF-8) as a JSON string literal, quotes included, appended to `out` / returned.
void append_json_string(std::string& out, std::string_view s);
std::string encode_json_string(std::string_view s);
void append_int(std::string& out, std::int64_t v);
void append_uint(std::string& out, std::uint64_t v);

}  // namespace mqttws
