// Fuzzes the SMTP reply parser and the reply classifier with untrusted wire
// text. Beyond not crashing, a reply that parses keeps the type's promises:
// a code in 200..599, an enhanced status whose class digit is the code's,
// and a wire form that parses back to the same reply.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "throttle/reply_classifier.h"
#include "throttle/smtp_reply.h"

using namespace mailer::throttle;

namespace {
void require(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 2 * kMaxReplyBytes) return 0;
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  static const ReplyClassifier classifier;
  for (SmtpStage stage : {SmtpStage::kGreeting, SmtpStage::kRcpt, SmtpStage::kEndOfData}) {
    SmtpReplyParse parsed = parse_smtp_reply(raw, stage);
    if (!parsed) {
      require(!parsed.error.empty());
      continue;
    }
    const SmtpReply& reply = *parsed;
    require(reply.code >= 200 && reply.code <= 599);
    require(reply.enhanced_status.empty() || reply.enhanced_status[0] == '0' + reply.code / 100);
    SmtpReplyParse again = parse_smtp_reply(format_smtp_reply(reply), stage);
    require(again && again->code == reply.code && again->enhanced_status == reply.enhanced_status &&
            again->text == reply.text);
    (void)classifier.classify(reply, "gmail");
    (void)one_line(reply);
  }
  return 0;
}
