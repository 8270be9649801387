// libFuzzer target for the static web root's path checks (static_path.hpp): whatever the
// request target, a resolved path is relative, has no empty, "." or ".." segment, no hidden
// segment, no control character or backslash; a refusal is 400 or 404.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "core/static_path.hpp"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view target(reinterpret_cast<const char*>(data), size);
    const auto resolved = mqttws::resolve_static_path(target);
    if (const auto* refusal = std::get_if<mqttws::static_refusal>(&resolved)) {
        require(refusal->status == 400 || refusal->status == 404);
        return 0;
    }
    const auto& t = std::get<mqttws::static_target>(resolved);
    const std::string_view rel = t.relative;
    require(!rel.empty() && rel.front() != '/' && rel.back() != '/');
    std::size_t start = 0;
    while (start <= rel.size()) {
        std::size_t end = rel.find('/', start);
        if (end == std::string_view::npos) end = rel.size();
        const std::string_view segment = rel.substr(start, end - start);
        require(!segment.empty() && segment != "." && segment != ".." && segment.front() != '.');
        for (const char c : segment) {
            const auto u = static_cast<unsigned char>(c);
            require(u >= 0x20 && u != 0x7F && c != '\\');
        }
        start = end + 1;
    }
    (void)mqttws::mime_type(rel);
    return 0;
}
