// Reading the XML answers of S3 and Azure Blob (errors, listings, upload ids) with Boost's
// property tree, and escaping text for the XML bodies they are sent. Header-only, Boost only.
#pragma once

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>

#include <exception>
#include <sstream>
#include <string>

namespace ember::net {

using XmlTree = boost::property_tree::ptree;

// body as a tree; an empty tree when it is empty or not XML (an HTML error page from a proxy or
// a local server): the caller then reports the HTTP status instead.
inline XmlTree parse_xml(const std::string& body) {
  XmlTree t;
  if (body.empty()) return t;
  try {
    std::istringstream in(body);
    boost::property_tree::read_xml(in, t);
  } catch (const std::exception&) {
    return XmlTree();
  }
  return t;
}

// s with &, <, > and " as entities, for element text and attribute values.
inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace ember::net
