variable "name_prefix" {
  description = "Prefix of every resource's name: the environment's name. Hosts are named PREFIX-SERVICE-N."
  type        = string
}

variable "cidr" {
  description = "Subnet the made-up addresses are taken from (the compute module's stand_in_cidr): lms from host 10, cms from 40, guacd from 70."
  type        = string
  default     = "10.20.0.0/24"
}

variable "image_name" {
  description = "Image the hosts boot (the local cloud's 1 KiB image: the fake driver boots nothing)."
  type        = string
  default     = "lab-fake-image"
}

variable "default_flavor" {
  description = "Flavor of the hosts (the local cloud's smallest)."
  type        = string
  default     = "lab.tiny"
}

variable "ssh_public_key" {
  description = "OpenSSH public key of the key pair (a public key: not a secret; Nova checks that it parses)."
  type        = string
}

variable "services" {
  description = "Hosts per service: count and optional flavor (at most 30 a service: the made-up addresses)."
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
