variable "name_prefix" {
  description = "Prefix of the stack's and the hosts' names: the environment's name. Hosts are named PREFIX-SERVICE-N."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.name_prefix))
    error_message = "The name_prefix must be 1 to 31 lower-case letters, digits and dashes."
  }
}

variable "cidr" {
  description = "Subnet the made-up addresses are taken from: lms from host 10, cms from 40, guacd from 70."
  type        = string
  default     = "10.20.0.0/24"

  validation {
    condition     = can(cidrhost(var.cidr, 99))
    error_message = "The cidr must be an IPv4 CIDR with at least 100 addresses, such as 10.20.0.0/24."
  }
}

variable "services" {
  description = "Hosts per service (lms, cms, guacd), 1 to 30 each."
  type = map(object({
    count = number
  }))
  default = {
    lms   = { count = 1 }
    cms   = { count = 1 }
    guacd = { count = 1 }
  }

  validation {
    condition     = alltrue([for s in ["lms", "cms", "guacd"] : contains(keys(var.services), s)]) && length(var.services) == 3
    error_message = "The services must be exactly lms, cms and guacd."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.count >= 1 && s.count <= 30 && floor(s.count) == s.count])
    error_message = "Each service needs a whole count of 1 to 30 hosts."
  }
}

variable "create_wait_secs" {
  description = "Seconds each stand-in node takes to create (to watch, or interrupt, a slow apply)."
  type        = number
  default     = 0
}

variable "fail" {
  description = "Make the stand-in nodes fail to create (to see a failed apply)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags of the Heat stack."
  type        = list(string)
  default     = []
}
