// Fuzzes the incremental reply reader with untrusted wire bytes. Invariant:
// the replies (code, enhanced status, text, cut short or not) and the error
// that ends the stream do not depend on how the bytes were split: whole, one
// byte at a time, and in pieces of sizes drawn from the input all agree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sender/smtp_reply_reader.h"

using mailer::sender::ReceivedReply;
using mailer::sender::SmtpReplyReader;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

struct Outcome {
  std::vector<ReceivedReply> replies;
  std::string error;
};

bool same(const Outcome& a, const Outcome& b) {
  if (a.error != b.error || a.replies.size() != b.replies.size()) return false;
  for (std::size_t i = 0; i < a.replies.size(); ++i) {
    const ReceivedReply& x = a.replies[i];
    const ReceivedReply& y = b.replies[i];
    if (x.reply.code != y.reply.code || x.reply.enhanced_status != y.reply.enhanced_status ||
        x.reply.text != y.reply.text || x.cut_short != y.cut_short) {
      return false;
    }
  }
  return true;
}

// Feeds `bytes` in pieces whose sizes come from `sizes` (cycled; 0 means 1),
// taking replies as they finish, then ends the stream.
Outcome run(std::string_view bytes, std::string_view sizes) {
  // Small limits, so that the fuzzer reaches them with short inputs.
  SmtpReplyReader reader(64, 512);
  Outcome out;
  std::size_t k = 0;
  while (!bytes.empty()) {
    std::size_t n =
        sizes.empty() ? bytes.size() : static_cast<unsigned char>(sizes[k++ % sizes.size()]);
    n = std::min(std::max<std::size_t>(n, 1), bytes.size());
    reader.feed(bytes.substr(0, n));
    bytes.remove_prefix(n);
    while (auto r = reader.take()) out.replies.push_back(std::move(*r));
  }
  reader.finish();
  while (auto r = reader.take()) out.replies.push_back(std::move(*r));
  out.error = reader.error();
  for (const ReceivedReply& r : out.replies) {
    require(r.reply.code >= 200 && r.reply.code <= 599);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  std::string_view all(reinterpret_cast<const char*>(data), size);
  // The first byte says how many of the following bytes are piece sizes.
  std::size_t nsizes = std::min<std::size_t>(static_cast<unsigned char>(all[0]) % 8, size - 1);
  std::string_view sizes = all.substr(1, nsizes);
  std::string_view bytes = all.substr(1 + nsizes);

  Outcome whole = run(bytes, {});
  require(same(whole, run(bytes, std::string_view("\x01", 1))));
  require(same(whole, run(bytes, sizes)));
  return 0;
}
