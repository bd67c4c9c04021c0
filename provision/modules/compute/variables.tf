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
  description = "ID of the network the hosts are on (the network module's network_id)."
  type        = string
}

variable "security_groups" {
  description = "Security group names per service (the network module's security_groups)."
  type        = map(list(string))
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
