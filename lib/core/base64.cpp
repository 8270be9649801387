#include "core/base64.hpp"

#include <array>
#include <cstdint>

namespace mqttws::base64 {
namespace {

constexpr char standard_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<std::int8_t, 256> make_reverse(const char* alphabet) {
    std::array<std::int8_t, 256> table{};
    for (auto& v : table)
        v = -1;
    for (int i = 0; i < 64; ++i)
        table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return table;
}
constexpr auto standard_reverse = make_reverse(standard_alphabet);
constexpr auto url_reverse = make_reverse(url_alphabet);

}  // namespace

void encode_append(std::string_view bytes, std::string& out, flavour f) {
    const char* alphabet = f.url_alphabet ? url_alphabet : standard_alphabet;
    out.reserve(out.size() + (bytes.size() + 2) / 3 * 4);
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t written = 0;
    for (const char c : bytes) {
        acc = (acc << 8) | static_cast<unsigned char>(c);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += alphabet[(acc >> bits) & 63];
            ++written;
        }
    }
    if (bits > 0) {
        out += alphabet[(acc << (6 - bits)) & 63];
        ++written;
    }
    if (f.padded) {
        for (; written % 4 != 0; ++written)
            out += '=';
    }
}

std::string encode(std::string_view bytes, flavour f) {
    std::string out;
    encode_append(bytes, out, f);
    return out;
}

std::optional<std::string> decode(std::string_view text, flavour f) {
    const auto& reverse = f.url_alphabet ? url_reverse : standard_reverse;
    if (f.padded) {
        if (text.size() % 4 != 0) return std::nullopt;
        // Padding: at most two '=', only at the very end.
        std::size_t pad = 0;
        while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=')
            ++pad;
        text.remove_suffix(pad);
        if (pad > 0 && text.size() % 4 != 4 - pad) return std::nullopt;
    }
    if (text.size() % 4 == 1) return std::nullopt;  // 6 bits cannot end a byte
    std::string out;
    out.reserve(text.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char c : text) {
        const std::int8_t v = reverse[static_cast<unsigned char>(c)];
        if (v < 0) return std::nullopt;  // not the alphabet: '=' inside, whitespace, the other 2
        acc = ((acc << 6) | static_cast<std::uint32_t>(v)) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    // Leftover bits must be zero, so that each byte string has exactly one encoding.
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return out;
}

}  // namespace mqttws::base64
