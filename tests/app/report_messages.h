// Bounce reports the bounce tests send or ingest: one RFC 3464 delivery status
// notification and one RFC 3834 auto-reply, each about a message mailer sent.
#pragma once

#include <string>

namespace mailer::testing {

// An RFC 3464 report about `rcpt`, sent to return path `to`.
inline std::string dsn(const std::string& id, const std::string& to, const std::string& rcpt,
                       const std::string& action, const std::string& status,
                       const std::string& diagnostic) {
  return "From: MAILER-DAEMON@mx.example.net\r\nTo: " + to +
         "\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <" + id +
         "@mx.example.net>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
         "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
         "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; "
         "mx.example.net\r\n"
         "\r\nFinal-Recipient: rfc822; " +
         rcpt + "\r\nAction: " + action + "\r\nStatus: " + status + "\r\nDiagnostic-Code: smtp; " +
         diagnostic + "\r\n\r\n--B\r\nContent-Type: message/rfc822-headers\r\n\r\nReturn-Path: <" +
         to + ">\r\nFrom: News <news@example.com>\r\nTo: " + rcpt +
         "\r\nSubject: Hello\r\n\r\n--B--\r\n";
}

// An out-of-office reply from `from` to `to`.
inline std::string auto_reply(const std::string& id, const std::string& from,
                              const std::string& to) {
  return "From: " + from + "\r\nTo: " + to + "\r\nSubject: Out of office: Hello\r\n" +
         "Auto-Submitted: auto-replied\r\nMessage-ID: <" + id +
         "@mail.example.org>\r\n\r\nI am away until Monday.\r\n";
}

}  // namespace mailer::testing
