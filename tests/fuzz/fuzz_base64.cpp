// libFuzzer target for core/base64.
// - decode(encode(x)) == x for any bytes x, and encode's length is 4 * ceil(n / 3).
// - decode of arbitrary text never crashes, and when it succeeds the result re-encodes to the
//   very same text (strict decoding: one text per byte string).
// Any violation aborts, which libFuzzer reports as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/base64.hpp"

namespace {

void expect(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_base64: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace base64 = mqttws::base64;
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    const std::string encoded = base64::encode(bytes);
    expect(encoded.size() == (size + 2) / 3 * 4, "encoded length");
    const auto round_trip = base64::decode(encoded);
    expect(round_trip.has_value(), "decode refused encode's output");
    expect(*round_trip == bytes, "decode(encode(x)) != x");

    std::string appended = "prefix";
    base64::encode_append(bytes, appended);
    expect(appended == "prefix" + encoded, "encode_append differs from encode");

    if (const auto decoded = base64::decode(bytes)) {
        expect(decoded->size() <= size / 4 * 3, "decoded more bytes than the text can carry");
        expect(base64::encode(*decoded) == bytes, "decoded text does not re-encode to itself");
    }
    return 0;
}
