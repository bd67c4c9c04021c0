variable "name_prefix" {
  description = "Prefix of every resource's name: the environment's name."
  type        = string
}

variable "cidr" {
  description = "The platform's private subnet (IPv4 CIDR)."
  type        = string
  default     = "10.20.0.0/24"
}

variable "external_network_id" {
  description = "ID of the external network for the router's gateway (null: no router)."
  type        = string
  default     = null
}

variable "ssh_allowed_cidrs" {
  description = "Networks (CIDRs) allowed to reach the hosts over SSH."
  type        = list(string)
}

variable "image_name" {
  description = "Image the hosts boot (Debian 12)."
  type        = string
}

variable "default_flavor" {
  description = "Flavor of the hosts."
  type        = string
}

variable "ssh_public_key" {
  description = "OpenSSH public key installed on the hosts for Ansible (a public key: not a secret)."
  type        = string
}

variable "services" {
  description = "Hosts per service: count and optional flavor."
  type = map(object({
    count  = number
    flavor = optional(string)
  }))
  default = {
    lms   = { count = 1 }
    cms   = { count = 1 }
    guacd = { count = 1 }
  }
}
