#include <vmhost/loader/result.h>

namespace vmhost {

const char* statusName(int32_t code) {
  switch (code) {
    case VMHOST_OK:
      return "OK";
    case VMHOST_ERR_CANCELLED:
      return "CANCELLED";
    case VMHOST_ERR_UNKNOWN:
      return "UNKNOWN";
    case VMHOST_ERR_INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case VMHOST_ERR_DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case VMHOST_ERR_NOT_FOUND:
      return "NOT_FOUND";
    case VMHOST_ERR_ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case VMHOST_ERR_PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case VMHOST_ERR_RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case VMHOST_ERR_FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case VMHOST_ERR_ABORTED:
      return "ABORTED";
    case VMHOST_ERR_OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case VMHOST_ERR_UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case VMHOST_ERR_INTERNAL:
      return "INTERNAL";
    case VMHOST_ERR_UNAVAILABLE:
      return "UNAVAILABLE";
    case VMHOST_ERR_DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "UNKNOWN";
  }
}

std::string Error::describe() const { return std::string(statusName(code)) + ": " + message; }

}  // namespace vmhost
