output "hosts" {
  description = "The hosts of each service, which labplane renders into the inventory: the made-up addresses read back from each server's metadata."
  value       = module.compute.hosts
}
