// The checksums the s3 plugin sends: CRC-32C against its published check value and RFC 3720's
// test vectors, the CPU-instruction path against the table path, and body_digests against the
// one-shot SHA-256 and MD5. (tests/plugins/s3/faults_test.cpp checks the values on the wire with an
// independent implementation in fault_proxy.py.)
#define BOOST_TEST_MODULE s3_checksum
#include <boost/test/unit_test.hpp>

#include "checksum.hpp"
#include "s3_fixture.hpp"

namespace s3 = ember::s3;
namespace net = ember::net;

namespace {

std::uint32_t software(std::string_view s, std::uint32_t crc = 0) {
  return ~net::crc32c_detail::update_software(~crc, reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(crc32c_matches_the_check_value_and_rfc3720_vectors) {
  std::string asc(32, '\0'), desc(32, '\0');
  for (int i = 0; i < 32; ++i) asc[i] = static_cast<char>(i), desc[i] = static_cast<char>(31 - i);
  const std::pair<std::string, std::uint32_t> vectors[] = {
      {"123456789", 0xE3069283u},            // the CRC catalogue's check value
      {std::string(32, '\0'), 0x8A9136AAu},  // RFC 3720 B.4: 32 bytes of zeros
      {std::string(32, '\xff'), 0x62A8AB43u},
      {asc, 0x46DD794Eu},
      {desc, 0x113FDB5Cu},
      {"", 0u},
  };
  for (const auto& [data, want] : vectors) {
    BOOST_TEST(s3::crc32c(data) == want);
    BOOST_TEST(software(data) == want);
  }
}

BOOST_AUTO_TEST_CASE(crc32c_header_value_is_big_endian_base64) {
  BOOST_TEST(s3::crc32c_base64(s3::crc32c("123456789")) == "4waSgw==");
  BOOST_TEST(s3::crc32c_base64(0) == "AAAAAA==");
}

BOOST_AUTO_TEST_CASE(instruction_and_table_paths_agree_at_every_length_and_alignment) {
  BOOST_TEST_MESSAGE("crc32c uses the CPU instruction here: " << (net::crc32c_hardware() ? "yes" : "no"));
  const std::string data = ember::test::pattern_bytes(4096 + 64, 11);
  for (std::size_t offset = 0; offset < 8; ++offset)
    for (std::size_t n = 0; n < 300; ++n) {
      std::string_view s(data.data() + offset, n);
      BOOST_TEST(s3::crc32c(s) == software(s), "offset " << offset << " length " << n);
    }
  std::string_view all(data.data() + 3, 4096 + 7);
  BOOST_TEST(s3::crc32c(all) == software(all));
}

BOOST_AUTO_TEST_CASE(crc32c_continues_across_pieces) {
  const std::string data = ember::test::pattern_bytes(100000, 12);
  const std::uint32_t whole = s3::crc32c(data);
  for (std::size_t cut : {0, 1, 7, 8, 9, 4095, 65536, 99999, 100000}) {
    std::string_view a(data.data(), cut), b(data.data() + cut, data.size() - cut);
    BOOST_TEST(s3::crc32c(b, s3::crc32c(a)) == whole, "cut at " << cut);
    BOOST_TEST(software(b, software(a)) == whole, "cut at " << cut);
  }
}

BOOST_AUTO_TEST_CASE(body_digests_equal_the_one_shot_hashes_across_slices) {
  // Sizes around the 256 KiB slices body_digests walks in.
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(256 * 1024), std::size_t(256 * 1024 + 1),
                        std::size_t(3 * 1024 * 1024 + 17)}) {
    const std::string body = ember::test::pattern_bytes(n, 13 + n);
    auto crc = s3::body_digests(body, s3::Checksum::crc32c);
    BOOST_TEST(crc.sha256_hex == s3::sha256_hex(body));
    BOOST_TEST(crc.header_name == "x-amz-checksum-crc32c");
    BOOST_TEST(crc.header_value == s3::crc32c_base64(s3::crc32c(body)));
    auto md5 = s3::body_digests(body, s3::Checksum::md5);
    BOOST_TEST(md5.sha256_hex == crc.sha256_hex);
    BOOST_TEST(md5.header_name == "Content-MD5");
    BOOST_TEST(md5.header_value == s3::md5_base64(body));
  }
}
