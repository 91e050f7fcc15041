// Fuzzes the bounce parser with untrusted mail. Beyond not crashing and
// staying within libFuzzer's time and memory limits, every report keeps the
// parser's promises: each recipient has an address with an '@', a kind from
// the five, a status that is empty or "D.D.D", and a bounded diagnostic; no
// more recipients than the limit allows.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "lists/bounce_parser.h"

using namespace mailer::lists;

namespace {
void require(bool ok) {
  if (!ok) std::abort();
}

bool valid_status(std::string_view status) {
  if (status.empty()) return true;
  if (status.size() < 5 || (status[0] != '2' && status[0] != '4' && status[0] != '5')) return false;
  int dots = 0;
  for (char c : status) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 2;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view message(reinterpret_cast<const char*>(data), size);
  BounceParserLimits limits;
  limits.max_message_bytes = 256 << 10;
  limits.max_recipients = 100;
  const BounceReport report = parse_bounce(message, limits);
  require(report.recipients.size() <= limits.max_recipients);
  require(report.truncated == (size > limits.max_message_bytes));
  if (report.format == ReportFormat::kNotAReport) require(report.recipients.empty());
  for (const BounceRecipient& r : report.recipients) {
    require(!r.address.empty() && r.address.find('@') != std::string::npos);
    require(r.kind == FeedbackKind::kHard || r.kind == FeedbackKind::kSoft ||
            r.kind == FeedbackKind::kComplaint || r.kind == FeedbackKind::kAutoReply ||
            r.kind == FeedbackKind::kDelivered);
    require(valid_status(r.status));
    require(r.diagnostic.size() <= kMaxDiagnosticBytes);
  }
  return 0;
}
