// The bytes of a TensorBoard event file: the protobuf wire format of the few messages the logger
// writes (tensorflow.Event and what it holds), and the TFRecord framing around each one.
//
// Written by hand rather than with libprotobuf: the logger emits a handful of fields of five
// wire types (varint, fixed64, fixed32, length-delimited, packed doubles) and reads nothing, so a
// few dozen lines (on top of the shared wire writer, ember/sdk/protobuf_wire.hpp) replace a generated-code build step, a .proto copy of TensorBoard's tree and a
// run-time dependency in every plugin directory (and the Lambda zip). The tests read the output
// with Debian's python3-protobuf from .proto files of their own, so the encoder is checked by an
// independent decoder.
//
// TFRecord: per record a little-endian u64 length, the masked CRC-32C of those 8 bytes, the data,
// the masked CRC-32C of the data. CRC-32C is the shared one (ember/net/digest.hpp: SSE4.2 or tables).
#pragma once

#include <ember/net/digest.hpp>  // ember::net::crc32c
#include <ember/sdk/protobuf_wire.hpp>  // ember::pb, the protobuf wire writer

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ember::tensorboard {

// A message under construction: append fields in any order (the wire format allows it), nest
// another Proto as a length-delimited field, every field through ember::pb (protobuf_wire.hpp).
// Unlike pb::int_field, zero values are written:
// a oneof member such as simple_value = 0 must be present.
class Proto {
 public:
  Proto& varint(std::uint32_t field, std::uint64_t v) {
    pb::tag(out_, static_cast<int>(field), 0);
    pb::varint(out_, v);
    return *this;
  }
  // int32/int64/enum fields: negative values are 10-byte varints (two's complement), as protobuf does.
  Proto& int64(std::uint32_t field, std::int64_t v) { return varint(field, static_cast<std::uint64_t>(v)); }
  Proto& boolean(std::uint32_t field, bool v) { return varint(field, v ? 1 : 0); }
  Proto& float64(std::uint32_t field, double v) {
    pb::fixed64_field(out_, static_cast<int>(field), v);
    return *this;
  }
  Proto& float32(std::uint32_t field, float v) {
    pb::fixed32_field(out_, static_cast<int>(field), v);
    return *this;
  }
  Proto& bytes(std::uint32_t field, std::string_view v) {
    pb::bytes_field(out_, static_cast<int>(field), v, true);
    return *this;
  }
  Proto& message(std::uint32_t field, const Proto& m) { return bytes(field, m.out_); }
  // repeated double [packed = true]
  Proto& packed_doubles(std::uint32_t field, const std::vector<double>& vs) {
    pb::packed_doubles_field(out_, static_cast<int>(field), vs);
    return *this;
  }

  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// TFRecord's CRC: CRC-32C rotated and offset, so that a CRC stored in the data does not check
// against itself.
inline std::uint32_t masked_crc32c(std::string_view data) {
  const std::uint32_t c = ember::net::crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Append one TFRecord holding data to out.
inline void append_record(std::string& out, std::string_view data) {
  char head[8];
  const std::uint64_t n = data.size();
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  auto put32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  out.append(head, 8);
  put32(masked_crc32c(std::string_view(head, 8)));
  out.append(data);
  put32(masked_crc32c(data));
}

// Field numbers of tensorboard/compat/proto (event.proto, summary.proto, histogram.proto,
// tensor.proto, tensor_shape.proto) and tensorboard/plugins/hparams (plugin_data.proto,
// api.proto) and google/protobuf/struct.proto: only the ones written here.
namespace field {
// tensorflow.Event
constexpr std::uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
// tensorflow.Summary / Summary.Value
constexpr std::uint32_t kSummaryValue = 1;
constexpr std::uint32_t kValueTag = 1, kValueSimpleValue = 2, kValueImage = 4, kValueHisto = 5, kValueTensor = 8,
                        kValueMetadata = 9;
// tensorflow.Summary.Image
constexpr std::uint32_t kImageHeight = 1, kImageWidth = 2, kImageColorspace = 3, kImageEncoded = 4;
// tensorflow.HistogramProto
constexpr std::uint32_t kHistoMin = 1, kHistoMax = 2, kHistoNum = 3, kHistoSum = 4, kHistoSumSquares = 5,
                        kHistoBucketLimit = 6, kHistoBucket = 7;
// tensorflow.SummaryMetadata / .PluginData
constexpr std::uint32_t kMetadataPluginData = 1, kMetadataDescription = 3;
constexpr std::uint32_t kPluginName = 1, kPluginContent = 2;
// tensorflow.TensorProto / TensorShapeProto / .Dim
constexpr std::uint32_t kTensorDtype = 1, kTensorShape = 2, kTensorStringVal = 8;
constexpr std::uint32_t kShapeDim = 2, kDimSize = 1;
constexpr std::uint64_t kDtString = 7;
// tensorboard.hparams.HParamsPluginData
constexpr std::uint32_t kHpExperiment = 2, kHpSessionStart = 3, kHpSessionEnd = 4;
// Experiment / HParamInfo / MetricInfo / MetricName
constexpr std::uint32_t kExpHparamInfos = 4, kExpMetricInfos = 5;
constexpr std::uint32_t kHparamInfoName = 1, kHparamInfoType = 4;
constexpr std::uint32_t kMetricInfoName = 1, kMetricNameTag = 2;
constexpr std::uint64_t kDataTypeString = 1, kDataTypeBool = 2, kDataTypeFloat64 = 3;
// SessionStartInfo (hparams is map<string, google.protobuf.Value>: entries key = 1, value = 2)
constexpr std::uint32_t kStartHparams = 1, kStartTimeSecs = 5;
constexpr std::uint32_t kMapKey = 1, kMapValue = 2;
// SessionEndInfo; Status
constexpr std::uint32_t kEndStatus = 1, kEndTimeSecs = 2;
constexpr std::uint64_t kStatusSuccess = 1, kStatusFailure = 2;
// google.protobuf.Value
constexpr std::uint32_t kValueNumber = 2, kValueString = 3, kValueBool = 4;
}  // namespace field

}  // namespace ember::tensorboard
