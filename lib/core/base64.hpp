// Base64 (RFC 4648, standard alphabet, padded) for binary payloads in JSON frames.
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mqttws::base64 {

std::string encode(std::string_view bytes);
void encode_append(std::string_view bytes, std::string& out);
// nullopt unless `text` is valid padded base64 (whitespace is not accepted) in its canonical
// form: the bits under the padding are zero, so a text that decodes re-encodes to itself.
std::optional<std::string> decode(std::string_view text);

}  // namespace mqttws::base64
