#include "node/agent/control_plane.h"

#include "api/migration.h"
#include "api/objects.h"

namespace vmhost::node {
namespace {

class StoreFeed final : public VmFeed {
 public:
  explicit StoreFeed(std::unique_ptr<store::Watch> watch) : watch_(std::move(watch)) {}

  std::optional<VmEvent> tryNext() override {
    // Undecodable objects are skipped: the API never stores one.
    for (int guard = 0; guard < 100000; ++guard) {
      auto event = watch_->tryNext();
      if (!event) return std::nullopt;
      if (event->type == store::WatchEventType::kError) {
        return VmEvent{VmEvent::Type::kRelist, {}};
      }
      auto vm = api::decodeStoredVirtualMachine(*event->object);
      if (!vm.ok()) continue;
      return VmEvent{event->type == store::WatchEventType::kDeleted ? VmEvent::Type::kDeleted
                                                                    : VmEvent::Type::kUpsert,
                     std::move(vm.value())};
    }
    return std::nullopt;
  }

  void setNotify(std::function<void()> notify) override { watch_->setNotify(std::move(notify)); }

 private:
  std::unique_ptr<store::Watch> watch_;
};

}  // namespace

Status StoreControlPlane::registerNode(const api::Node& node) {
  auto r = api::registerNode(store_, node);
  if (!r.ok()) return r.error();
  return Ok{};
}

Result<VmSnapshot> StoreControlPlane::listAndWatch() {
  auto list = store_.list(api::kVirtualMachinesResource, "");
  if (!list.ok()) return list.error();
  VmSnapshot snapshot;
  snapshot.vms.reserve(list.value().items.size());
  for (const auto& object : list.value().items) {
    auto vm = api::decodeStoredVirtualMachine(object);
    if (vm.ok()) snapshot.vms.push_back(std::move(vm.value()));
  }
  auto watch = store_.watch(api::kVirtualMachinesResource, "", list.value().revision);
  if (!watch.ok()) return watch.error();
  snapshot.feed = std::make_unique<StoreFeed>(std::move(watch.value()));
  return snapshot;
}

Result<std::optional<api::VirtualMachine>> StoreControlPlane::getVm(const std::string& ns,
                                                                    const std::string& name) {
  auto object = store_.get(api::virtualMachineKey(ns, name));
  if (!object.ok()) {
    if (object.error().code == VMHOST_ERR_NOT_FOUND) return std::optional<api::VirtualMachine>{};
    return object.error();
  }
  auto vm = api::decodeStoredVirtualMachine(object.value());
  if (!vm.ok()) return vm.error();
  return std::optional<api::VirtualMachine>(std::move(vm.value()));
}

Status StoreControlPlane::updateVmStatus(
    const std::string& ns, const std::string& name,
    const std::function<bool(api::VirtualMachineStatus&)>& mutate) {
  auto r = api::updateVirtualMachineStatus(store_, ns, name, mutate);
  if (!r.ok()) return r.error();
  return Ok{};
}

Status StoreControlPlane::reportMigration(const std::string& ns, const std::string& name,
                                          const api::MigrationState& report) {
  std::optional<Error> refused;
  auto r = api::updateVirtualMachineStatus(store_, ns, name, [&](api::VirtualMachineStatus& s) {
    auto merged = api::applyMigrationReport(s, nodeName_, report);
    if (!merged.ok()) {
      refused = merged.error();
      return false;
    }
    return merged.value();
  });
  if (refused) return *refused;
  if (!r.ok()) return r.error();
  return Ok{};
}

}  // namespace vmhost::node
