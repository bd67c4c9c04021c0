variable "name_prefix" {
  description = "Prefix of every host's name: hosts are named PREFIX-SERVICE-N (staging-lms-1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.name_prefix))
    error_message = "The name_prefix must be 1 to 31 lower-case letters, digits and dashes."
  }
}

variable "services" {
  description = "Hosts per service: how many, and the flavor (null: default_flavor). Every service (lms, cms, guacd) needs at least one host."
  type = map(object({
    count  = number
    flavor = optional(string)
  }))

  validation {
    condition     = alltrue([for s in ["lms", "cms", "guacd"] : contains(keys(var.services), s)]) && length(var.services) == 3
    error_message = "The services must be exactly lms, cms and guacd."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.count >= 1 && floor(s.count) == s.count])
    error_message = "Each service needs a whole count of at least 1 host."
  }
}

variable "default_flavor" {
  description = "Flavor of the hosts whose service names none."
  type        = string
}

variable "image_name" {
  description = "Image the hosts boot (Debian 12, which the playbooks are written for)."
  type        = string
}

variable "key_pair" {
  description = "Name of the key pair whose public key is installed for SSH (Ansible)."
  type        = string
}

variable "network_id" {
  description = "ID of the network the hosts are on (the network module's network_id); null: no network (Nova's networks \"none\", for a cloud without Neutron), each host then given a made-up address from stand_in_cidr."
  type        = string
  default     = null
}

variable "stand_in_cidr" {
  description = "Only with no network: the subnet the hosts' made-up addresses are taken from (lms from host 10, cms from 40, guacd from 70; at most 30 hosts a service). Each is recorded in its host's metadata as labplane-stand-in-address and output as its address; nothing answers there."
  type        = string
  default     = null

  validation {
    condition     = var.stand_in_cidr == null || can(cidrhost(var.stand_in_cidr, 99))
    error_message = "The stand_in_cidr must be an IPv4 CIDR with at least 100 addresses, such as 10.20.0.0/24."
  }
}

variable "security_groups" {
  description = "Security group names per service (the network module's security_groups); a service not in it gets the cloud's default group."
  type        = map(list(string))
  default     = {}
}

variable "availability_zone" {
  description = "Availability zone of the hosts (null: the cloud's default)."
  type        = string
  default     = null
}

variable "metadata" {
  description = "Metadata set on every host, besides labplane-environment and labplane-service."
  type        = map(string)
  default     = {}
}
