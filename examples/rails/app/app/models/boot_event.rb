# "db:prepare" and "server" rows, one per run, in order.
class BootEvent < ApplicationRecord
end
