#include "node/domain/domain_xml.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vmhost::node {

namespace {

Error invalid(std::string_view field, std::string_view problem) {
  return Error{VMHOST_ERR_INVALID_ARGUMENT, std::string(field) + ": " + std::string(problem),
               false};
}

std::string quoted(std::string_view v) { return "'" + std::string(v) + "'"; }

bool isOneOf(std::string_view v, std::initializer_list<std::string_view> allowed) {
  return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
}

// Every value ends up in XML that libxml2 parses: it must be UTF-8 and free
// of the control characters XML 1.0 cannot carry at all (not even escaped).
// Tabs and newlines are legal XML but never meaningful in a name, path or
// command line, and they make log lines lie, so they are refused too.
std::optional<Error> checkText(std::string_view field, std::string_view v) {
  size_t i = 0;
  while (i < v.size()) {
    auto c = static_cast<unsigned char>(v[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "contains control character 0x%02x at byte %zu", c, i);
      return invalid(field, buf);
    }
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Multi-byte UTF-8: the lead byte gives the length; reject overlong forms,
    // surrogates, values above U+10FFFF and the XML non-characters FFFE/FFFF.
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || c > 0xf4 || i + len > v.size()) {
      return invalid(field, "is not valid UTF-8 (at byte " + std::to_string(i) + ")");
    }
    uint32_t cp = c & (0xff >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(v[i + k]);
      if ((cc & 0xc0) != 0x80) {
        return invalid(field, "is not valid UTF-8 (at byte " + std::to_string(i) + ")");
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff) {
      return invalid(field, "is not valid UTF-8 (at byte " + std::to_string(i) + ")");
    }
    i += len;
  }
  return std::nullopt;
}

std::optional<Error> checkPath(std::string_view field, std::string_view v, bool required) {
  if (v.empty()) {
    if (required) return invalid(field, "must not be empty");
    return std::nullopt;
  }
  if (auto e = checkText(field, v)) return e;
  if (v.front() != '/') return invalid(field, quoted(v) + " is not an absolute path");
  return std::nullopt;
}

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view v) {
  std::string out(v);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool validUuid(std::string_view v) {
  // 8-4-4-4-12, the form libvirt prints back.
  if (v.size() != 36) return false;
  for (size_t i = 0; i < v.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? v[i] != '-' : !isHex(v[i])) return false;
  }
  return true;
}

std::optional<Error> checkMac(std::string_view field, std::string_view v) {
  bool shape = v.size() == 17;
  for (size_t i = 0; shape && i < v.size(); ++i) {
    shape = (i % 3 == 2) ? v[i] == ':' : isHex(v[i]);
  }
  if (!shape) return invalid(field, quoted(v) + " is not a MAC address (xx:xx:xx:xx:xx:xx)");
  int first = std::stoi(std::string(v.substr(0, 2)), nullptr, 16);
  // libvirt refuses a multicast address for a NIC; say so before it does.
  if (first & 1) return invalid(field, quoted(v) + " is a multicast address");
  if (lowered(v) == "00:00:00:00:00:00") return invalid(field, "the all-zero address is not valid");
  return std::nullopt;
}

// Linux interface names: at most 15 bytes, no '/', ':' or whitespace.
bool validIfName(std::string_view v) {
  if (v.empty() || v.size() > 15 || v == "." || v == "..") return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

bool validToken(std::string_view v) {
  return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// "q35", "pc", or a versioned form ("pc-q35-7.2", "pc-i440fx-7.2"): a
// redefinition after a QEMU upgrade must be able to keep the version the
// guest was started with, and migration needs the same one on both sides.
bool validMachine(std::string_view v) {
  if (v == "q35" || v == "pc") return true;
  for (std::string_view prefix : {"pc-q35-", "pc-i440fx-"}) {
    if (v.substr(0, prefix.size()) == prefix) {
      auto ver = v.substr(prefix.size());
      return !ver.empty() && std::all_of(ver.begin(), ver.end(),
                                         [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
    }
  }
  return false;
}

// Disk target names must match the bus: libvirt derives the controller
// address from the name's index, and "vdb" on a sata bus only misleads.
std::optional<Error> checkDiskTarget(std::string_view field, std::string_view dev,
                                     std::string_view bus) {
  std::string_view prefix = bus == "virtio" ? "vd" : "sd";
  bool ok = dev.size() > prefix.size() && dev.substr(0, prefix.size()) == prefix &&
            std::all_of(dev.begin() + prefix.size(), dev.end(),
                        [](char c) { return c >= 'a' && c <= 'z'; });
  if (!ok) {
    return invalid(field, quoted(dev) + " does not name a " + std::string(bus) +
                              " disk (expected " + std::string(prefix) + "a, " +
                              std::string(prefix) + "b, ...)");
  }
  return std::nullopt;
}

std::string idx(std::string_view base, size_t i, std::string_view member) {
  return std::string(base) + "[" + std::to_string(i) + "]." + std::string(member);
}

using Attrs = std::vector<std::pair<std::string, std::string>>;

// A small indenting XML writer: attributes and text are always escaped.
class XmlWriter {
 public:
  XmlWriter& open(std::string_view tag, const Attrs& attrs = {}) {
    startTag(tag, attrs);
    out_ += ">\n";
    stack_.emplace_back(tag);
    return *this;
  }
  XmlWriter& empty(std::string_view tag, const Attrs& attrs = {}) {
    startTag(tag, attrs);
    out_ += "/>\n";
    return *this;
  }
  XmlWriter& text(std::string_view tag, std::string_view value, const Attrs& attrs = {}) {
    startTag(tag, attrs);
    out_ += ">";
    out_ += xmlEscape(value);
    out_ += "</";
    out_ += tag;
    out_ += ">\n";
    return *this;
  }
  XmlWriter& close() {
    indent(stack_.size() - 1);
    out_ += "</" + stack_.back() + ">\n";
    stack_.pop_back();
    return *this;
  }
  std::string take() { return std::move(out_); }

 private:
  void indent(size_t depth) { out_.append(depth * 2, ' '); }
  void startTag(std::string_view tag, const Attrs& attrs) {
    indent(stack_.size());
    out_ += "<";
    out_ += tag;
    for (const auto& [k, v] : attrs) {
      out_ += " ";
      out_ += k;
      out_ += "='";
      out_ += xmlEscape(v);
      out_ += "'";
    }
  }

  std::string out_;
  std::vector<std::string> stack_;
};

// `inDomain`: the element as it sits in the domain XML (prefixed, with its
// namespace declaration); otherwise as virDomainSetMetadata takes it (bare:
// libvirt applies the prefix and namespace itself and fails if one exists).
void writeMetadata(XmlWriter& w, const DomainSpec& spec, bool inDomain) {
  std::string p = inDomain ? std::string(kMetadataPrefix) + ":" : "";
  Attrs vmAttrs;
  if (inDomain)
    vmAttrs.emplace_back("xmlns:" + std::string(kMetadataPrefix), std::string(kMetadataNamespace));
  vmAttrs.emplace_back("namespace", spec.vm.ns);
  vmAttrs.emplace_back("name", spec.vm.name);
  vmAttrs.emplace_back("uid", spec.vm.uid);
  vmAttrs.emplace_back("generation", std::to_string(spec.vm.generation));
  if (spec.disks.empty() && spec.interfaces.empty()) {
    w.empty(p + "vm", vmAttrs);
    return;
  }
  w.open(p + "vm", vmAttrs);
  for (const auto& d : spec.disks) {
    w.empty(
        p + "disk",
        {{"volume", d.volumeName}, {"target", d.targetDev}, {"shared", d.shared ? "yes" : "no"}});
  }
  for (const auto& n : spec.interfaces) {
    w.empty(p + "interface", {{"name", n.interfaceName}, {"mac", lowered(n.mac)}});
  }
  w.close();
}

}  // namespace

std::string xmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string domainName(std::string_view ns, std::string_view name) {
  return std::string(ns) + "_" + std::string(name);
}

Status validateDomainSpec(const DomainSpec& spec) {
  if (spec.name.empty()) return invalid("name", "must not be empty");
  if (auto e = checkText("name", spec.name)) return *e;
  // libvirt names files after the domain (logs, sockets, state).
  if (spec.name.find('/') != std::string::npos) {
    return invalid("name", quoted(spec.name) + " must not contain '/'");
  }
  if (!spec.uuid.empty() && !validUuid(spec.uuid)) {
    return invalid("uuid",
                   quoted(spec.uuid) + " is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  }
  if (spec.vm.ns.empty()) return invalid("vm.namespace", "must not be empty");
  if (spec.vm.name.empty()) return invalid("vm.name", "must not be empty");
  if (auto e = checkText("vm.namespace", spec.vm.ns)) return *e;
  if (auto e = checkText("vm.name", spec.vm.name)) return *e;
  if (auto e = checkText("vm.uid", spec.vm.uid)) return *e;
  if (!validMachine(spec.machine)) {
    return invalid("machine",
                   quoted(spec.machine) + " is not one of q35, pc, pc-q35-<ver>, pc-i440fx-<ver>");
  }
  if (spec.memoryBytes == 0) return invalid("memoryBytes", "must be greater than 0");
  if (spec.vcpus == 0) return invalid("vcpus", "must be greater than 0");

  if (auto e = checkPath("kernel", spec.kernel, false)) return *e;
  if (auto e = checkPath("initrd", spec.initrd, false)) return *e;
  if (auto e = checkText("cmdline", spec.cmdline)) return *e;
  if (spec.kernel.empty() && !spec.initrd.empty()) return invalid("initrd", "needs a kernel");
  if (spec.kernel.empty() && !spec.cmdline.empty()) return invalid("cmdline", "needs a kernel");

  std::map<std::string, size_t> targets;
  std::map<uint32_t, std::string> bootOrders;
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = spec.disks[i];
    if (auto e = checkText(idx("disks", i, "volumeName"), d.volumeName)) return *e;
    if (auto e = checkPath(idx("disks", i, "sourcePath"), d.sourcePath, true)) return *e;
    if (!isOneOf(d.diskType, {"file", "block"})) {
      return invalid(idx("disks", i, "diskType"),
                     quoted(d.diskType) + " is not one of file, block");
    }
    if (!isOneOf(d.format, {"qcow2", "raw"})) {
      return invalid(idx("disks", i, "format"), quoted(d.format) + " is not one of qcow2, raw");
    }
    if (!isOneOf(d.bus, {"virtio", "sata", "scsi"})) {
      return invalid(idx("disks", i, "bus"), quoted(d.bus) + " is not one of virtio, sata, scsi");
    }
    if (d.targetDev.empty()) return invalid(idx("disks", i, "targetDev"), "must not be empty");
    if (auto e = checkText(idx("disks", i, "targetDev"), d.targetDev)) return *e;
    if (auto e = checkDiskTarget(idx("disks", i, "targetDev"), d.targetDev, d.bus)) return *e;
    auto [it, fresh] = targets.emplace(d.targetDev, i);
    if (!fresh) {
      return invalid(
          idx("disks", i, "targetDev"),
          quoted(d.targetDev) + " is already used by disks[" + std::to_string(it->second) + "]");
    }
    // QEMU has no read-only ATA hard disk (libvirt refuses at define time:
    // "readonly sata disks are not supported"); only a CD-ROM, which the
    // guest sees as removable media. Say so before libvirt does.
    if (d.readOnly && d.bus == "sata") {
      return invalid(idx("disks", i, "readOnly"),
                     "a read-only disk cannot use bus sata; use virtio or scsi");
    }
    if (!d.cache.empty() &&
        !isOneOf(d.cache, {"none", "writethrough", "writeback", "directsync", "unsafe"})) {
      return invalid(
          idx("disks", i, "cache"),
          quoted(d.cache) + " is not one of none, writethrough, writeback, directsync, unsafe");
    }
    if (d.bootOrder != 0) {
      auto [b, freshBoot] = bootOrders.emplace(d.bootOrder, "disks[" + std::to_string(i) + "]");
      if (!freshBoot) {
        return invalid(idx("disks", i, "bootOrder"),
                       std::to_string(d.bootOrder) + " is already used by " + b->second);
      }
    }
  }

  std::map<std::string, size_t> macs;
  std::map<std::string, size_t> taps;
  for (size_t i = 0; i < spec.interfaces.size(); ++i) {
    const auto& n = spec.interfaces[i];
    if (auto e = checkText(idx("interfaces", i, "interfaceName"), n.interfaceName)) return *e;
    if (!isOneOf(n.type, {"network", "bridge", "user", "ethernet"})) {
      return invalid(idx("interfaces", i, "type"),
                     quoted(n.type) + " is not one of network, bridge, user, ethernet");
    }
    if (auto e = checkText(idx("interfaces", i, "source"), n.source)) return *e;
    bool needsSource = n.type == "network" || n.type == "bridge";
    if (needsSource && n.source.empty()) {
      return invalid(idx("interfaces", i, "source"),
                     "must name the " + n.type + " for type " + n.type);
    }
    if (!needsSource && !n.source.empty()) {
      return invalid(idx("interfaces", i, "source"), "must be empty for type " + n.type);
    }
    // A bridge is a Linux interface; libvirt names files after networks.
    if (n.type == "bridge" && !validIfName(n.source)) {
      return invalid(idx("interfaces", i, "source"),
                     quoted(n.source) + " is not an interface name (1-15 of [A-Za-z0-9._-])");
    }
    if (n.type == "network" && n.source.find('/') != std::string::npos) {
      return invalid(idx("interfaces", i, "source"), quoted(n.source) + " must not contain '/'");
    }
    if (!n.mac.empty()) {
      if (auto e = checkMac(idx("interfaces", i, "mac"), n.mac)) return *e;
      auto [it, fresh] = macs.emplace(lowered(n.mac), i);
      if (!fresh) {
        return invalid(
            idx("interfaces", i, "mac"),
            quoted(n.mac) + " is already used by interfaces[" + std::to_string(it->second) + "]");
      }
    }
    if (!validToken(n.model)) {
      return invalid(idx("interfaces", i, "model"), quoted(n.model) + " is not a NIC model name");
    }
    if (!n.targetDev.empty()) {
      if (!validIfName(n.targetDev)) {
        return invalid(idx("interfaces", i, "targetDev"),
                       quoted(n.targetDev) + " is not an interface name (1-15 of [A-Za-z0-9._-])");
      }
      auto [it, fresh] = taps.emplace(n.targetDev, i);
      if (!fresh) {
        return invalid(idx("interfaces", i, "targetDev"), quoted(n.targetDev) +
                                                              " is already used by interfaces[" +
                                                              std::to_string(it->second) + "]");
      }
    }
  }

  if (auto e = checkPath("serialLogFile", spec.serialLogFile, false)) return *e;

  if (spec.graphics) {
    const auto& g = *spec.graphics;
    if (!isOneOf(g.type, {"spice", "vnc"})) {
      return invalid("graphics.type", quoted(g.type) + " is not one of spice, vnc");
    }
    if (g.autoport && g.port != 0) return invalid("graphics.port", "must be 0 when autoport is on");
    if (!g.autoport && (g.port < 5900 || g.port > 65535)) {
      return invalid("graphics.port", std::to_string(g.port) + " is not in 5900..65535");
    }
    // An IP address or a host name (libvirt's schema allows nothing else).
    if (!g.listen.empty() && !std::all_of(g.listen.begin(), g.listen.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == ':' || c == '-';
        })) {
      return invalid("graphics.listen", quoted(g.listen) + " is not an address or host name");
    }
    if (!g.defaultMode.empty()) {
      if (g.type != "spice") return invalid("graphics.defaultMode", "applies to spice only");
      if (!isOneOf(g.defaultMode, {"any", "secure", "insecure"})) {
        return invalid("graphics.defaultMode",
                       quoted(g.defaultMode) + " is not one of any, secure, insecure");
      }
    }
  }
  if (spec.video) {
    const auto& v = *spec.video;
    if (!isOneOf(v.model, {"qxl", "virtio", "vga", "bochs", "none"})) {
      return invalid("video.model",
                     quoted(v.model) + " is not one of qxl, virtio, vga, bochs, none");
    }
    if (v.heads < 1 || v.heads > 4)
      return invalid("video.heads", std::to_string(v.heads) + " is not in 1..4");
  }
  return Ok{};
}

std::string vmMetadataXml(const DomainSpec& spec) {
  XmlWriter w;
  writeMetadata(w, spec, false);
  return w.take();
}

Result<std::string> toDomainXml(const DomainSpec& spec) {
  if (auto st = validateDomainSpec(spec); !st) return st.error();

  XmlWriter w;
  w.open("domain", {{"type", spec.virtType == VirtType::kKvm ? "kvm" : "qemu"}});
  w.text("name", spec.name);
  if (!spec.uuid.empty()) w.text("uuid", lowered(spec.uuid));
  w.open("metadata");
  writeMetadata(w, spec, true);
  w.close();
  // libvirt keeps KiB; round up so the guest never gets less than asked.
  w.text("memory", std::to_string((spec.memoryBytes + 1023) / 1024), {{"unit", "KiB"}});
  w.text("vcpu", std::to_string(spec.vcpus), {{"placement", "static"}});

  w.open("os");
  w.text("type", "hvm", {{"arch", "x86_64"}, {"machine", spec.machine}});
  if (!spec.kernel.empty()) {
    w.text("kernel", spec.kernel);
    if (!spec.initrd.empty()) w.text("initrd", spec.initrd);
    if (!spec.cmdline.empty()) w.text("cmdline", spec.cmdline);
  }
  w.close();
  // ACPI: a graceful shutdown is an ACPI power-button press.
  w.open("features").empty("acpi").empty("apic").close();
  w.empty("clock", {{"offset", "utc"}});
  w.text("on_poweroff", "destroy");
  w.text("on_reboot", "restart");
  // A crashed guest stays down: the node's reconcile loop decides what next
  // (and sees why), rather than libvirt restarting it behind its back.
  w.text("on_crash", "destroy");

  w.open("devices");
  bool anyScsi = false;
  for (const auto& d : spec.disks) {
    anyScsi = anyScsi || d.bus == "scsi";
    w.open("disk", {{"type", d.diskType}, {"device", "disk"}});
    if (d.cache.empty()) {
      w.empty("driver", {{"name", "qemu"}, {"type", d.format}});
    } else {
      w.empty("driver", {{"name", "qemu"}, {"type", d.format}, {"cache", d.cache}});
    }
    w.empty("source", {{d.diskType == "block" ? "dev" : "file", d.sourcePath}});
    w.empty("target", {{"dev", d.targetDev}, {"bus", d.bus}});
    if (d.readOnly) w.empty("readonly");
    if (d.bootOrder != 0) w.empty("boot", {{"order", std::to_string(d.bootOrder)}});
    w.close();
  }
  // Without this libvirt picks the LSI controller, which QEMU builds may
  // lack and guests need an extra driver for.
  if (anyScsi) w.empty("controller", {{"type", "scsi"}, {"index", "0"}, {"model", "virtio-scsi"}});
  // Headless VMs get no USB controller: one device less for the guest to
  // probe (noticeable under TCG) and nothing would use it.
  if (!spec.graphics) w.empty("controller", {{"type", "usb"}, {"model", "none"}});

  for (const auto& n : spec.interfaces) {
    w.open("interface", {{"type", n.type}});
    if (!n.mac.empty()) w.empty("mac", {{"address", lowered(n.mac)}});
    if (n.type == "network") w.empty("source", {{"network", n.source}});
    if (n.type == "bridge") w.empty("source", {{"bridge", n.source}});
    if (!n.targetDev.empty()) {
      // An ethernet tap is the plugin's: libvirt must use it, not recreate it.
      if (n.type == "ethernet") {
        w.empty("target", {{"dev", n.targetDev}, {"managed", "no"}});
      } else {
        w.empty("target", {{"dev", n.targetDev}});
      }
    }
    w.empty("model", {{"type", n.model}});
    w.close();
  }

  w.open("serial", {{"type", "pty"}});
  if (!spec.serialLogFile.empty()) w.empty("log", {{"file", spec.serialLogFile}, {"append", "on"}});
  w.empty("target", {{"port", "0"}});
  w.close();
  w.open("console", {{"type", "pty"}});
  w.empty("target", {{"type", "serial"}, {"port", "0"}});
  w.close();

  if (spec.graphics) {
    const auto& g = *spec.graphics;
    // An absolute pointer, so a remote viewer's cursor and the guest's agree.
    w.empty("input", {{"type", "tablet"}, {"bus", "usb"}});
    Attrs attrs = {{"type", g.type}};
    if (g.autoport) {
      attrs.emplace_back("autoport", "yes");
    } else {
      attrs.emplace_back("port", std::to_string(g.port));
      attrs.emplace_back("autoport", "no");
    }
    if (!g.defaultMode.empty()) attrs.emplace_back("defaultMode", g.defaultMode);
    if (g.listen.empty()) {
      w.empty("graphics", attrs);
    } else {
      w.open("graphics", attrs);
      w.empty("listen", {{"type", "address"}, {"address", g.listen}});
      w.close();
    }
  }
  if (spec.video) {
    w.open("video");
    if (spec.video->model == "none") {
      w.empty("model", {{"type", "none"}});
    } else {
      w.empty("model", {{"type", spec.video->model},
                        {"heads", std::to_string(spec.video->heads)},
                        {"primary", "yes"}});
    }
    w.close();
  }
  w.close();  // devices
  w.close();  // domain
  return w.take();
}

// ---------------------------------------------------------------------------
// Reading the metadata element back.

namespace {

// Just enough of XML for one element tree that libxml2 serialised: elements,
// attributes, entities, comments, whitespace. Text content is ignored (the
// metadata keeps everything in attributes). Bounded: the input is whatever
// is stored in a domain, not necessarily ours.
struct XmlElement {
  std::string qname;
  std::vector<std::pair<std::string, std::string>> attrs;
  std::vector<XmlElement> children;

  std::string_view localName() const {
    auto colon = qname.find(':');
    return colon == std::string::npos ? std::string_view(qname)
                                      : std::string_view(qname).substr(colon + 1);
  }
  std::string_view prefix() const {
    auto colon = qname.find(':');
    return colon == std::string::npos ? std::string_view()
                                      : std::string_view(qname).substr(0, colon);
  }
  const std::string* attr(std::string_view name) const {
    for (const auto& [k, v] : attrs) {
      if (k == name) return &v;
    }
    return nullptr;
  }
};

class MiniXmlParser {
 public:
  explicit MiniXmlParser(std::string_view in) : in_(in) {}

  Result<XmlElement> parseDocument() {
    skipMisc();
    XmlElement root;
    if (auto e = parseElement(root, 0)) return *e;
    skipMisc();
    if (pos_ != in_.size()) return err("unexpected content after the root element");
    return root;
  }

 private:
  static constexpr int kMaxDepth = 8;
  static constexpr size_t kMaxChildren = 4096;

  Error err(std::string_view what) const {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 "vmhost metadata: " + std::string(what) + " at offset " + std::to_string(pos_),
                 false};
  }
  bool startsWith(std::string_view s) const { return in_.substr(pos_, s.size()) == s; }
  static bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  void skipSpace() {
    while (pos_ < in_.size() && isSpace(in_[pos_])) ++pos_;
  }
  // Whitespace, comments and processing instructions (<?xml ...?>).
  void skipMisc() {
    for (;;) {
      skipSpace();
      if (startsWith("<!--")) {
        auto end = in_.find("-->", pos_ + 4);
        pos_ = end == std::string_view::npos ? in_.size() : end + 3;
      } else if (startsWith("<?")) {
        auto end = in_.find("?>", pos_ + 2);
        pos_ = end == std::string_view::npos ? in_.size() : end + 2;
      } else {
        return;
      }
    }
  }
  static bool isNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':' || static_cast<unsigned char>(c) >= 0x80;
  }
  std::string parseName() {
    size_t start = pos_;
    while (pos_ < in_.size() && isNameChar(in_[pos_])) ++pos_;
    return std::string(in_.substr(start, pos_ - start));
  }
  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  std::optional<Error> decodeInto(std::string_view raw, std::string& out) {
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '&') {
        out += raw[i];
        continue;
      }
      auto semi = raw.find(';', i);
      if (semi == std::string_view::npos || semi - i > 10) return err("unterminated entity");
      auto ent = raw.substr(i + 1, semi - i - 1);
      if (ent == "lt") {
        out += '<';
      } else if (ent == "gt") {
        out += '>';
      } else if (ent == "amp") {
        out += '&';
      } else if (ent == "quot") {
        out += '"';
      } else if (ent == "apos") {
        out += '\'';
      } else if (ent.size() > 1 && ent[0] == '#') {
        bool hex = ent[1] == 'x';
        auto digits = ent.substr(hex ? 2 : 1);
        uint32_t cp = 0;
        auto [p, ec] =
            std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
        if (ec != std::errc() || p != digits.data() + digits.size() || digits.empty() || cp == 0 ||
            cp > 0x10ffff) {
          return err("bad character reference");
        }
        appendUtf8(out, cp);
      } else {
        return err("unknown entity &" + std::string(ent) + ";");
      }
      i = semi;
    }
    return std::nullopt;
  }

  std::optional<Error> parseElement(XmlElement& el, int depth) {
    if (depth > kMaxDepth) return err("elements nested too deeply");
    if (!startsWith("<")) return err("expected an element");
    ++pos_;
    el.qname = parseName();
    if (el.qname.empty()) return err("expected an element name");
    for (;;) {
      skipSpace();
      if (startsWith("/>")) {
        pos_ += 2;
        return std::nullopt;
      }
      if (startsWith(">")) {
        ++pos_;
        break;
      }
      std::string name = parseName();
      if (name.empty()) return err("expected an attribute name");
      skipSpace();
      if (!startsWith("=")) return err("expected '=' after attribute " + name);
      ++pos_;
      skipSpace();
      if (pos_ >= in_.size() || (in_[pos_] != '"' && in_[pos_] != '\'')) {
        return err("expected a quoted value for attribute " + name);
      }
      char quote = in_[pos_++];
      auto end = in_.find(quote, pos_);
      if (end == std::string_view::npos) return err("unterminated value of attribute " + name);
      std::string value;
      if (auto e = decodeInto(in_.substr(pos_, end - pos_), value)) return e;
      pos_ = end + 1;
      el.attrs.emplace_back(std::move(name), std::move(value));
    }
    // Content: child elements, comments, text (ignored), then the end tag.
    for (;;) {
      auto lt = in_.find('<', pos_);
      if (lt == std::string_view::npos) return err("missing </" + el.qname + ">");
      pos_ = lt;
      if (startsWith("<!--")) {
        skipMisc();
        continue;
      }
      if (startsWith("</")) {
        pos_ += 2;
        if (parseName() != el.qname) return err("mismatched end tag for <" + el.qname + ">");
        skipSpace();
        if (!startsWith(">")) return err("expected '>'");
        ++pos_;
        return std::nullopt;
      }
      if (el.children.size() >= kMaxChildren) return err("too many child elements");
      el.children.emplace_back();
      if (auto e = parseElement(el.children.back(), depth + 1)) return e;
    }
  }

  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

Result<VmMetadata> parseVmMetadata(std::string_view xml) {
  auto parsed = MiniXmlParser(xml).parseDocument();
  if (!parsed) return parsed.error();
  const XmlElement& root = parsed.value();
  auto bad = [](std::string_view what) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, "vmhost metadata: " + std::string(what), false};
  };
  // virDomainGetMetadata selects the element by namespace and returns it
  // with the namespace stripped (no prefix, no declaration). The element as
  // it appears in the domain XML keeps both; then the namespace must be ours.
  std::string nsAttr = root.prefix().empty() ? "xmlns" : "xmlns:" + std::string(root.prefix());
  const std::string* uri = root.attr(nsAttr);
  if ((uri && *uri != kMetadataNamespace) || (!uri && !root.prefix().empty())) {
    return bad("<" + root.qname + "> is not in namespace " + std::string(kMetadataNamespace));
  }
  if (root.localName() != "vm") return bad("root element is <" + root.qname + ">, not <vm>");

  VmMetadata md;
  auto get = [](const XmlElement& el, std::string_view name) {
    const std::string* v = el.attr(name);
    return v ? *v : std::string();
  };
  md.vm.ns = get(root, "namespace");
  md.vm.name = get(root, "name");
  md.vm.uid = get(root, "uid");
  if (md.vm.ns.empty() || md.vm.name.empty()) return bad("namespace and name are required");
  std::string gen = get(root, "generation");
  if (!gen.empty()) {
    auto [p, ec] = std::from_chars(gen.data(), gen.data() + gen.size(), md.vm.generation);
    if (ec != std::errc() || p != gen.data() + gen.size())
      return bad("generation '" + gen + "' is not a number");
  }
  for (const auto& child : root.children) {
    // Only children in our namespace (same prefix); others are future fields
    // or someone else's and are skipped, as the schema only ever grows.
    if (child.prefix() != root.prefix()) continue;
    if (child.localName() == "disk") {
      md.disks.push_back(
          {get(child, "volume"), get(child, "target"), get(child, "shared") == "yes"});
    } else if (child.localName() == "interface") {
      md.interfaces.push_back({get(child, "name"), get(child, "mac")});
    }
  }
  return md;
}

}  // namespace vmhost::node
