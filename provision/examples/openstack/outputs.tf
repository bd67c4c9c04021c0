output "hosts" {
  description = "The hosts of each service, which labplane renders into the inventory."
  value       = module.compute.hosts
}

output "network_id" {
  description = "ID of the private network."
  value       = module.network.network_id
}
