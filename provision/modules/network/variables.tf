variable "name_prefix" {
  description = "Prefix of every resource's name (the environment's name, such as \"staging\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.name_prefix))
    error_message = "The name_prefix must be 1 to 31 lower-case letters, digits and dashes."
  }
}

variable "cidr" {
  description = "The platform's private subnet (IPv4 CIDR), such as \"10.20.0.0/24\"."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0))
    error_message = "The cidr must be an IPv4 CIDR such as 10.20.0.0/24."
  }
}

variable "dns_nameservers" {
  description = "DNS servers handed out on the subnet."
  type        = list(string)
  default     = []
}

variable "external_network_id" {
  description = "ID of the external (provider) network the router's gateway is on; null for no router (hosts reached on the private network only)."
  type        = string
  default     = null
}

variable "ssh_allowed_cidrs" {
  description = "Networks (CIDRs) allowed to reach the hosts over SSH (Ansible)."
  type        = list(string)
}

variable "http_allowed_cidrs" {
  description = "Networks (CIDRs) allowed to reach the LMS and CMS over HTTP(S)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "lms_ports" {
  description = "TCP ports the LMS and CMS hosts serve (nginx: HTTP, HTTPS, the CMS's port)."
  type        = list(number)
  default     = [80, 443, 18010]
}

variable "guacd_port" {
  description = "TCP port guacd listens on; only the LMS and CMS hosts may reach it."
  type        = number
  default     = 4822
}
