// libFuzzer target for signed device frames (frame_signature.hpp) and the line files of the
// security configuration that are new with it (device keys, revocations).
//
// Input: a frame. Checks: a split signature's signed bytes are a prefix of the frame plus '}',
// and its signature is base64url; verification never crashes; the device-key and revocation
// parsers (fed the same bytes) either parse or name real lines.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "core/frame_signature.hpp"
#include "core/revocation.hpp"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

template <class Parsed>
void check_lines(const Parsed& parsed, std::string_view text) {
    std::size_t lines = 1;
    for (const char c : text)
        lines += c == '\n' ? 1 : 0;
    if (const auto* errors = std::get_if<std::vector<mqttws::line_error>>(&parsed)) {
        require(!errors->empty());
        for (const auto& e : *errors)
            require(e.line >= 1 && e.line <= lines && !e.message.empty());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view frame(reinterpret_cast<const char*>(data), size);
    if (const auto s = mqttws::split_signature(frame)) {
        require(!s->signed_bytes.empty() && s->signed_bytes.back() == '}');
        require(frame.substr(0, s->signed_bytes.size() - 1) ==
                std::string_view(s->signed_bytes).substr(0, s->signed_bytes.size() - 1));
        require(!s->signature.empty());
        (void)mqttws::signature_valid("fuzz-secret-0123456789", *s);
    }
    check_lines(mqttws::device_keys::parse(frame), frame);
    check_lines(mqttws::revocation_list::parse(frame), frame);
    mqttws::replay_guard guard(30000, 4);
    for (std::size_t i = 0; i + 8 <= size && i < 64; i += 8)
        (void)guard.fresh("d", static_cast<std::int64_t>(data[i]) * 1000,
                          std::string(frame.substr(i, 8)), 100000);
    return 0;
}
