// Fuzzes the SMTP server conversation of `mailer inbound` (SmtpSession) with
// untrusted client bytes. Invariants: every reply is well formed (three
// digits, CRLF), a delivered message fits max_message_size and has only
// recipients of the accepted domains, and the whole transcript does not
// depend on how the bytes were split: whole, one byte at a time, and in
// pieces of sizes drawn from the input all agree.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "app/inbound/smtp_session.h"

using mailer::app::SmtpAction;
using mailer::app::SmtpDelivery;
using mailer::app::SmtpSession;
using mailer::app::SmtpSessionOptions;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

SmtpSessionOptions options() {
  SmtpSessionOptions o;
  o.hostname = "inbound.example.test";
  o.domains = {"bounces.example.test", "Fbl.Example.Test."};
  o.max_message_size = 4096;
  o.max_command_line = 128;
  o.max_data_line = 256;
  o.max_recipients = 4;
  o.max_errors = 10;
  o.tls_available = true;
  return o;
}

void check_replies(std::string_view replies) {
  std::size_t pos = 0;
  while (pos < replies.size()) {
    const std::size_t end = replies.find("\r\n", pos);
    require(end != std::string_view::npos);
    const std::string_view line = replies.substr(pos, end - pos);
    require(line.size() >= 4);
    require(line[0] >= '2' && line[0] <= '5');
    require(line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9');
    require(line[3] == ' ' || line[3] == '-');
    pos = end + 2;
  }
}

// The conversation for `data` cut into `pieces`, as one transcript.
std::string converse(std::string_view data, const std::vector<std::size_t>& pieces) {
  SmtpSession s(options());
  std::string transcript = s.greeting();
  std::size_t pos = 0;
  std::size_t piece = 0;
  int messages = 0;
  while (pos < data.size()) {
    std::size_t n = pieces.empty() ? data.size() : pieces[piece++ % pieces.size()];
    n = std::min(std::max<std::size_t>(n, 1), data.size() - pos);
    s.feed(data.substr(pos, n));
    pos += n;
    for (;;) {
      const auto step = s.step();
      check_replies(step.replies);
      transcript += step.replies;
      if (step.action == SmtpAction::kNeedInput) break;
      if (step.action == SmtpAction::kClose) return transcript + "[close]";
      // After STARTTLS the bytes are a handshake's: the conversation ends here.
      if (step.action == SmtpAction::kStartTls) return transcript + "[tls]";
      require(s.message().size() <= 4096);
      require(!s.recipients().empty() && s.recipients().size() <= 4);
      for (const auto& r : s.recipients()) {
        const std::string d = mailer::app::recipient_domain(r);
        require(d == "bounces.example.test" || d == "fbl.example.test");
      }
      transcript += "[message " + s.sender() + " " + std::to_string(s.recipients().size()) + " " +
                    s.message() + "]";
      const std::string reply =
          s.message_done(++messages % 3 == 0 ? SmtpDelivery::kTransient : SmtpDelivery::kAccepted);
      check_replies(reply);
      transcript += reply;
    }
  }
  return transcript;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  const std::string whole = converse(data, {});
  require(converse(data, {1}) == whole);
  std::vector<std::size_t> pieces;
  for (std::size_t i = 0; i < std::min<std::size_t>(size, 8); ++i) {
    pieces.push_back(1 + static_cast<unsigned char>(data[i]) % 97);
  }
  require(converse(data, pieces) == whole);
  require(!mailer::app::log_escape(data).empty() || data.empty());
  return 0;
}
