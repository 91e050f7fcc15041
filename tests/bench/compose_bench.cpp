// Micro-benchmark of per-recipient composition and DKIM signing: messages/s
// for compose only, compose + rsa-sha256 (2048-bit), compose + ed25519-sha256
// and compose + both signatures, with a ~4 KB personalised message.
// Rates are given per wall-clock second and per CPU second of this process;
// the latter compares with `openssl speed`, which counts user CPU time, and
// stays meaningful on a shared, busy machine.
// Usage: compose_bench [SECONDS_PER_CASE]   (default 2)
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sender/dkim_signer.h"
#include "sender/message_composer.h"

using namespace mailer::sender;
using Clock = std::chrono::steady_clock;

namespace {

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string KeyPem(const char* type) {
  EVP_PKEY* key = std::string_view(type) == "RSA"
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, type);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

MessageComposer Composer() {
  ComposerSettings s;
  s.unsubscribe_base_url = "https://mail.example.com";
  s.unsubscribe_mailto = "unsubscribe@example.com";
  s.tokens = std::make_shared<UnsubscribeTokenCodec>("bench-secret-0123456789abcdef");
  s.verp = std::make_shared<VerpCodec>("bounce", "example.com", "bench-secret-0123456789abcdef");
  CampaignContent c;
  c.campaign_id = 1;
  c.list_id = "bench";
  c.from = "Example News <news@example.com>";
  c.subject = "Hello {{first_name|there}}, your spring offers from {{city|your town}}";
  std::string paragraph =
      "Dear {{first_name|customer}}, here is the news for {{city|your town}} this week. We have "
      "prepared offers that match what you looked at recently.\n";
  std::string text;
  std::string html = "<html><body>";
  while (text.size() < 1800) {
    text += paragraph;
    html += "<p>" + paragraph + "</p>";
  }
  c.text = text + "Unsubscribe: {{unsubscribe_url}}\n";
  c.html = html + "<a href=\"{{unsubscribe_url}}\">Unsubscribe</a></body></html>";
  return MessageComposer(c, s);
}

void Run(const char* name, const MessageComposer& composer, std::span<const DkimSigner> signers,
         double seconds) {
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  std::size_t count = 0;
  std::size_t bytes = 0;
  while (Clock::now() < deadline) {
    for (int i = 0; i < 50; ++i, ++count) {
      DeliveryRecipient r;
      r.delivery_id = static_cast<std::int64_t>(count);
      r.recipient_id = static_cast<std::int64_t>(count);
      r.email = "user" + std::to_string(count) + "@example.org";
      r.fields.Set("first_name", "Name" + std::to_string(count));
      r.fields.Set("city", "Zürich");
      ComposedMessage m = composer.Compose(std::move(r), std::chrono::system_clock::now());
      const std::string out = SignMessage(m.data, signers, std::chrono::system_clock::now());
      bytes += out.size();
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = CpuSeconds() - cpu_start;
  std::printf("%-28s %8.0f messages/s wall %8.0f messages/CPU-s  (%zu messages, avg %zu bytes)\n",
              name, count / elapsed, count / cpu, count, bytes / count);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  const MessageComposer composer = Composer();
  const DkimSigner rsa = DkimSigner::FromPem("example.com", "rsa", DkimAlgorithm::kRsaSha256,
                                             KeyPem("RSA"), "generated RSA key");
  const DkimSigner ed = DkimSigner::FromPem("example.com", "ed", DkimAlgorithm::kEd25519Sha256,
                                            KeyPem("ED25519"), "generated Ed25519 key");
  const std::vector<DkimSigner> none;
  const std::vector<DkimSigner> only_rsa{rsa};
  const std::vector<DkimSigner> only_ed{ed};
  const std::vector<DkimSigner> both{rsa, ed};
  Run("compose", composer, none, seconds);
  Run("compose+rsa-sha256(2048)", composer, only_rsa, seconds);
  Run("compose+ed25519-sha256", composer, only_ed, seconds);
  Run("compose+rsa+ed25519", composer, both, seconds);
  return 0;
}
