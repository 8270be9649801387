#include "core/static_path.hpp"

#include <array>
#include <optional>
#include <utility>

namespace mqttws {
namespace {

constexpr std::size_t max_target_bytes = 2048;

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static_refusal malformed(std::string reason) {
    return static_refusal{400, std::move(reason)};
}

}  // namespace

std::variant<static_target, static_refusal> resolve_static_path(std::string_view target) {
    if (target.size() > max_target_bytes) return malformed("the path is too long");
    target = target.substr(0, target.find_first_of("?#"));
    if (target.empty() || target.front() != '/') return malformed("the path must start with '/'");

    static_target out;
    std::string segment;
    bool ends_with_slash = true;
    // Ends the segment gathered so far (at a '/' or at the end of the path).
    const auto finish_segment = [&]() -> std::optional<static_refusal> {
        if (segment.empty() || segment == ".") {
            segment.clear();
            return std::nullopt;
        }
        if (segment == "..") return malformed("'..' is not allowed in a path");
        if (segment.front() == '.') return static_refusal{404, "hidden files are not served"};
        if (!out.relative.empty()) out.relative += '/';
        out.relative += segment;
        segment.clear();
        return std::nullopt;
    };
    for (std::size_t i = 0; i < target.size(); ++i) {
        char c = target[i];
        if (c == '/') {
            if (auto refusal = finish_segment()) return *refusal;
            ends_with_slash = true;
            continue;
        }
        ends_with_slash = false;
        if (c == '%') {
            if (i + 2 >= target.size() || hex_value(target[i + 1]) < 0 ||
                hex_value(target[i + 2]) < 0) {
                return malformed("a '%' must be followed by two hex digits");
            }
            c = static_cast<char>(hex_value(target[i + 1]) * 16 + hex_value(target[i + 2]));
            i += 2;
            if (c == '/') return malformed("an encoded '/' is not allowed in a path");
        }
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7F) return malformed("control characters are not allowed");
        if (c == '\\') return malformed("'\\\\' is not allowed in a path");
        segment += c;
    }
    if (auto refusal = finish_segment()) return *refusal;
    out.directory = "/" + out.relative + (out.relative.empty() ? "" : "/");
    if (ends_with_slash || out.relative.empty()) {
        out.index = true;
        out.relative += out.relative.empty() ? "index.html" : "/index.html";
    }
    return out;
}

std::string_view mime_type(std::string_view file_name) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 22> types{{
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".md", "text/markdown; charset=utf-8"},
        {".ts", "text/plain; charset=utf-8"},
        {".wasm", "application/wasm"},
        {".woff", "font/woff"},
        {".woff2", "font/woff2"},
        {".pdf", "application/pdf"},
    }};
    const std::size_t dot = file_name.rfind('.');
    const std::size_t slash = file_name.rfind('/');
    if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
        const std::string_view ext = file_name.substr(dot);
        for (const auto& [suffix, type] : types) {
            if (ext.size() == suffix.size()) {
                bool same = true;
                for (std::size_t i = 0; i < ext.size() && same; ++i) {
                    const char a =
                        ext[i] >= 'A' && ext[i] <= 'Z' ? static_cast<char>(ext[i] + 32) : ext[i];
                    same = a == suffix[i];
                }
                if (same) return type;
            }
        }
    }
    return "application/octet-stream";
}

bool compressible(std::string_view mime) {
    return mime.substr(0, 5) == "text/" || mime.substr(0, 16) == "application/json" ||
           mime.substr(0, 25) == "application/manifest+json" || mime == "image/svg+xml" ||
           mime == "application/wasm";
}

}  // namespace mqttws
